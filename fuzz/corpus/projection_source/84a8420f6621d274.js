fromAll().when({
            $init: function () { return { count: 0, total: 0 }; },
            Deposited: function (s, e) { s.count += 1; s.total += e.data.amount; },
            Closed: function (s, e) { return { closed: true, count: s.count }; }
        })