fromCategory('order').partitionBy(e => e.body.region).when({
            $init: () => ({ n: 0 }),
            $created: (s, e) => { emit('regions', 'RegionSeen', { region: e.partition }); },
            $any: (s, e) => { s.n++; }
        })