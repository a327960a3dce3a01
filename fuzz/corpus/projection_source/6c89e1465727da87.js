fromCategory('account').foreachStream().when({
        $init: () => ({ n: 0, deleted: null }),
        $any: (s, e) => { s.n++; },
        $deleted: (s, e, partition, isSoftDelete) => {
            s.deleted = (isSoftDelete ? 'soft ' : 'hard ') + partition;
        }
    })