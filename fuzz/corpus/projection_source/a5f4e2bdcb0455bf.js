fromAll().when({
            $init: () => ({ any: 0, typed: 0 }),
            $any: (s, e) => { s.any++; },
            Typed: (s, e) => { s.typed++; }
        })