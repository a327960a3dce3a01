fromAll().when({ $init: () => ({ n: 0 }), $any: (s) => { s.n++; } })
           .transformBy(s => ({ doubled: s.n * 2 }))
           .filterBy(s => s.doubled > 2)