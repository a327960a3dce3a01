//! One top-level value of an event's JSON metadata (`$correlationId`, `$tags`), found
//! without building the whole document: the writer asks this of every event that names the
//! key, so the other values are only checked, never kept: as the whole parse checks them
//! (UTF-8, escapes, numbers in range, nesting depth), which `IgnoredAny` does not. The
//! answer is the one `serde_json::from_slice::<Value>` then `get(key)` gives, whatever the
//! input.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The value of `key` in the JSON object `metadata` (the last one when it repeats);
/// `None` when `metadata` is not a JSON object or has no such key.
pub(crate) fn metadata_value(metadata: &[u8], key: &str) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(metadata);
    match (TopLevel { key }).deserialize(&mut deserializer) {
        Ok(found) if deserializer.end().is_ok() => found,
        // Names with escapes cannot be borrowed from the input, and anything that is not
        // an object ends here too: the whole document decides, as before.
        _ => match serde_json::from_slice::<Value>(metadata) {
            Ok(Value::Object(mut object)) => object.remove(key),
            _ => None,
        },
    }
}

struct TopLevel<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<Value>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<&'de str>()? {
            if name == self.key {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value_seed(Checked)?;
            }
        }
        Ok(found)
    }
}

/// A value parsed as the whole document parses it, and dropped.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_before(metadata: &[u8], key: &str) -> Option<Value> {
        match serde_json::from_slice::<Value>(metadata) {
            Ok(Value::Object(object)) => object.get(key).cloned(),
            _ => None,
        }
    }

    #[test]
    fn answers_as_the_whole_document_does() {
        let cases: &[&str] = &[
            r#"{"$correlationId":"c-1","other":[1,{"a":null}]}"#,
            r#"{"a":1,"$correlationId":"first","$correlationId":"last"}"#,
            r#"{"$correlationId":7}"#,
            r#"{"$correlation\u0049d":"escaped name"}"#,
            r#"{"k\"ey":1,"$correlationId":"after an escaped name"}"#,
            r#"{"$correlationId":"c","nested":{"$correlationId":"inner"}}"#,
            r#"{"nested":{"$correlationId":"inner only"}}"#,
            r#"["$correlationId","not an object"]"#,
            r#""$correlationId""#,
            r#"{"$correlationId":"c"} trailing"#,
            r#"{"$correlationId":"c""#,
            r#"{"$correlationId":"c",}"#,
            r#"  {"$correlationId" : "spaced"}  "#,
            r#"{"$tags":["a","b","a"],"$correlationId":""}"#,
            "",
            "{}",
            // Values the whole parse refuses, beside the key.
            r#"{"$correlationId":"c","x":1e400}"#,
            r#"{"$correlationId":"c","x":"\ud800"}"#,
            r#"{"$correlationId":"c","x":"\q"}"#,
            r#"{"$correlationId":"c","x":[1,]}"#,
            r#"{"$correlationId":"c","x":-}"#,
        ];
        for case in cases {
            for key in ["$correlationId", "$tags"] {
                assert_eq!(
                    metadata_value(case.as_bytes(), key),
                    as_before(case.as_bytes(), key),
                    "{case} / {key}"
                );
            }
        }
        let deep = format!(
            r#"{{"$correlationId":"c","x":{}{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        let shallow = format!(
            r#"{{"$correlationId":"c","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let bytes: [&[u8]; 4] = [
            b"{\"$correlationId\":\"\xff\"}",
            b"{\"$correlationId\":\"c\",\"x\":\"\xff\"}",
            deep.as_bytes(),
            shallow.as_bytes(),
        ];
        for case in bytes {
            assert_eq!(
                metadata_value(case, "$correlationId"),
                as_before(case, "$correlationId"),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        assert_eq!(metadata_value(deep.as_bytes(), "$correlationId"), None);
        assert!(metadata_value(shallow.as_bytes(), "$correlationId").is_some());
    }
}
