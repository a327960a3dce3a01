//! Stream metadata JSON: parsing never panics, and what parses writes back to JSON that
//! parses to the same metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::{StreamMetadata, StreamName};

fuzz_target!(|json: &[u8]| {
    let stream = StreamName::new("order-1").expect("name");
    let _ = StreamMetadata::from_json_or_default(&stream, json);
    if let Ok(metadata) = StreamMetadata::from_json(&stream, json) {
        let written = metadata.to_json();
        let again = StreamMetadata::from_json(&stream, &written).unwrap_or_else(|error| {
            panic!(
                "{} does not parse: {error}",
                String::from_utf8_lossy(&written)
            )
        });
        assert_eq!(again, metadata, "{}", String::from_utf8_lossy(&written));
    }
});
