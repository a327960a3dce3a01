fromCategory('account').foreachStream().when({
        $init: () => ({ n: 0, sum: 0 }),
        $created: (s, e) => { emit('opened', 'Opened', { stream: e.streamId }); },
        Deposited: (s, e) => { s.n++; s.sum += e.data.amount; }
    })