fromCategory('order').when({
    $init: () => ({ placed: 0, total: 0 }),
    Placed: (s, e) => { s.placed++; s.total += e.data.total; }
}).outputState()