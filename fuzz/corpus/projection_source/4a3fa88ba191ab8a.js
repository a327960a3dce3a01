fromAll().when({ $any: (s, e) => {
            emit('out-1', 'Seen', { id: e.sequenceNumber }, { source: e.streamId });
            linkTo('links-1', e);
            copyTo('copies-1', e);
            linkStreamTo('streams-1', e.streamId);
            log('seen', e.sequenceNumber, { x: 1 });
        } })