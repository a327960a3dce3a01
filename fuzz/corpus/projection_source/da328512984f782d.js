fromStreamsMatching(function (streamId) {
        return streamId.indexOf('order-') === 0 && streamId !== 'order-3';
    }).when({
        $init: () => ({ n: 0 }),
        $any: (s, e) => { s.n++; }
    })