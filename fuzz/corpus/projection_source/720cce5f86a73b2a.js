fromAll().when({ $any: (s, e) => ({
            isJson: e.isJson, data: e.data, body: e.body, bodyRaw: e.bodyRaw,
            sequenceNumber: e.sequenceNumber, metadataRaw: e.metadataRaw, metadata: e.metadata,
            linkMetadataRaw: e.linkMetadataRaw, partition: e.partition, eventType: e.eventType,
            streamId: e.streamId, created: e.created, eventId: e.eventId, category: e.category
        }) })