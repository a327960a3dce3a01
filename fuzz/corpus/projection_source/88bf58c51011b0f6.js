fromStream('picked').when({
    $init: () => ({ seen: [] }),
    $any: (s, e) => {
        s.seen.push([e.streamId, e.sequenceNumber, e.eventType, e.body && e.body.n,
            e.linkMetadataRaw || null]);
    }
})