fromStreams(['order-2', 'order-1']).when({
        $init: () => ({ seen: [] }),
        $any: (s, e) => { s.seen.push(e.streamId + ':' + e.sequenceNumber); }
    })