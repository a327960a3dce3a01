fromAll().foreachStream().when({
            $init: () => ({ mine: 0 }),
            $initShared: () => ({ all: 0 }),
            $any: (s, e) => { s[0].mine++; s[1].all++; return s; }
        })