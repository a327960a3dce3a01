//! The NDJSON line format of `strata export` / `strata import`: any line is parsed or
//! refused with a message, and an event that parses writes back to a line that parses to the
//! same event (what an export of an import must give).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::{Position, RecordedEvent, Revision, StreamName, Timestamp};

#[path = "../../crates/strata-cli/src/data/ndjson.rs"]
#[allow(dead_code)]
mod ndjson;

fuzz_target!(|line: &str| {
    let Ok(ndjson::Imported::Event(imported)) = ndjson::decode(line) else {
        return;
    };
    let Ok(stream) = StreamName::new(imported.stream.clone()) else {
        return;
    };
    let recorded = RecordedEvent {
        stream,
        revision: Revision(imported.revision),
        position: Position(0),
        id: imported.event.id,
        event_type: String::from(&imported.event.event_type),
        content_type: imported.event.content_type,
        data: imported.event.data.clone(),
        metadata: imported.event.metadata.clone(),
        created: Timestamp(0),
    };
    let written = ndjson::encode(&recorded);
    match ndjson::decode(&written) {
        Ok(ndjson::Imported::Event(again)) => {
            assert_eq!(again.stream, imported.stream, "{written}");
            assert_eq!(again.revision, imported.revision, "{written}");
            assert_eq!(again.event, imported.event, "{written}");
        }
        // An ordinary event typed like a tombstone keeps its id and revision, so it stays one.
        other => panic!("{written} reads back as {other:?}"),
    }
});
