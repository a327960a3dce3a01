//! Filter regexes (.NET syntax, lookarounds): compiling and matching never panic or run
//! away; a pattern that would backtrack without end is an error, not a hang.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata_core::{EventFilter, FilterTarget};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    on_event_type: bool,
    pattern: &'a str,
    fields: Vec<&'a str>,
}

fuzz_target!(|input: Input<'_>| {
    let target = if input.on_event_type {
        FilterTarget::EventType
    } else {
        FilterTarget::StreamName
    };
    if let Ok(filter) = EventFilter::regex(target, input.pattern) {
        for field in input.fields.iter().take(4) {
            let _ = filter.try_matches_field(field);
            let _ = filter.try_matches_parts(field, field);
        }
    }
    let prefixes = input
        .fields
        .iter()
        .take(4)
        .map(|field| field.to_string())
        .collect();
    if let Ok(filter) = EventFilter::prefixes(target, prefixes) {
        let _ = filter.index_key();
        let _ = filter.try_matches_field(input.pattern);
    }
});
