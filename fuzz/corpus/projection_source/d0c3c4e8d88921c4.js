fromCategory('order').foreachStream().when({
    $init: () => ({ events: 0 }),
    $created: (s, e) => { emit('started', 'Started', { stream: e.streamId }); },
    $any: (s, e) => { s.events++; linkTo('all-orders', e); }
})