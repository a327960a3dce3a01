fromCategory('order').when({
    $init: () => ({ n: 0 }),
    $any: (s, e) => { s.n++; emit('seen', 'Seen', { id: e.sequenceNumber }); }
}).outputState()