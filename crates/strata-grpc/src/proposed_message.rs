//! `ProposedMessage`, the event of an Append or BatchAppend request (both protocols' messages
//! have the same fields, so one type serves both), with a hand-written decoder: the
//! `metadata` map is no `HashMap` of `String`s but slices of the request's buffer, the two
//! keys the server reads (`type`, `content-type`) in their own fields. A 1,000-event append
//! so costs no map and no `String` per metadata entry. Strings are checked to be UTF-8 as
//! prost checks them, and a later entry for a key replaces an earlier one, as in a map.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, bytes, check_wire_type, decode_key, merge_loop, message, skip_field,
};
use prost::{DecodeError, Message};

use crate::convert::{CONTENT_TYPE_KEY, TYPE_KEY};
use crate::proto::event_store::client::Uuid;
use crate::read_answer::{bytes_len, message_len, put_bytes, put_message_header};

/// A proposed event on the wire.
#[derive(Clone, PartialEq, Default, Debug)]
pub(crate) struct ProposedMessage {
    pub(crate) id: Option<Uuid>,
    pub(crate) metadata: ProposedMetadata,
    pub(crate) custom_metadata: Bytes,
    pub(crate) data: Bytes,
}

/// The `map<string, string>` of a proposed event; keys and values are UTF-8.
#[derive(Clone, PartialEq, Default, Debug)]
pub(crate) struct ProposedMetadata {
    event_type: Option<Bytes>,
    content_type: Option<Bytes>,
    /// Any other entries, in the order they came (the server ignores them).
    other: Vec<(Bytes, Bytes)>,
}

impl ProposedMetadata {
    /// The two entries every proposed event carries.
    pub(crate) fn new(event_type: impl Into<Bytes>, content_type: impl Into<Bytes>) -> Self {
        Self {
            event_type: Some(event_type.into()),
            content_type: Some(content_type.into()),
            other: Vec::new(),
        }
    }

    pub(crate) fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref().and_then(utf8)
    }

    pub(crate) fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref().and_then(utf8)
    }

    fn insert(&mut self, key: Bytes, value: Bytes) {
        match &key[..] {
            key if key == TYPE_KEY.as_bytes() => self.event_type = Some(value),
            key if key == CONTENT_TYPE_KEY.as_bytes() => self.content_type = Some(value),
            _ => match self.other.iter_mut().find(|(known, _)| *known == key) {
                Some((_, old)) => *old = value,
                None => self.other.push((key, value)),
            },
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        [
            (TYPE_KEY.as_bytes(), self.event_type.as_deref()),
            (CONTENT_TYPE_KEY.as_bytes(), self.content_type.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .chain(self.other.iter().map(|(key, value)| (&key[..], &value[..])))
    }
}

impl FromIterator<(String, String)> for ProposedMetadata {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(entries: I) -> Self {
        let mut metadata = Self::default();
        for (key, value) in entries {
            metadata.insert(Bytes::from(key), Bytes::from(value));
        }
        metadata
    }
}

fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Field numbers (streams.proto).
mod field {
    pub(super) const ID: u32 = 1;
    pub(super) const METADATA: u32 = 2;
    pub(super) const CUSTOM_METADATA: u32 = 3;
    pub(super) const DATA: u32 = 4;
    pub(super) const ENTRY_KEY: u32 = 1;
    pub(super) const ENTRY_VALUE: u32 = 2;
}

impl Message for ProposedMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(id) = &self.id {
            message::encode(field::ID, id, buf);
        }
        for (key, value) in self.metadata.entries() {
            put_message_header(field::METADATA, entry_len(key, value), buf);
            put_bytes(field::ENTRY_KEY, key, buf);
            put_bytes(field::ENTRY_VALUE, value, buf);
        }
        put_bytes(field::CUSTOM_METADATA, &self.custom_metadata, buf);
        put_bytes(field::DATA, &self.data, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            field::ID => message::merge(
                wire_type,
                self.id.get_or_insert_with(Uuid::default),
                buf,
                ctx,
            ),
            field::METADATA => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let (key, value) = merge_entry(buf, ctx)?;
                self.metadata.insert(key, value);
                Ok(())
            }
            field::CUSTOM_METADATA => bytes::merge(wire_type, &mut self.custom_metadata, buf, ctx),
            field::DATA => bytes::merge(wire_type, &mut self.data, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.id
            .as_ref()
            .map_or(0, |id| message::encoded_len(field::ID, id))
            + self
                .metadata
                .entries()
                .map(|(key, value)| message_len(field::METADATA, entry_len(key, value)))
                .sum::<usize>()
            + bytes_len(field::CUSTOM_METADATA, &self.custom_metadata)
            + bytes_len(field::DATA, &self.data)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// One map entry: a key and a value, each a UTF-8 string (empty when left out).
fn merge_entry(buf: &mut impl Buf, ctx: DecodeContext) -> Result<(Bytes, Bytes), DecodeError> {
    let mut entry = (Bytes::new(), Bytes::new());
    merge_loop(&mut entry, buf, ctx, |(key, value), buf, ctx| {
        let (tag, wire_type) = decode_key(buf)?;
        match tag {
            field::ENTRY_KEY => bytes::merge(wire_type, key, buf, ctx),
            field::ENTRY_VALUE => bytes::merge(wire_type, value, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    })?;
    if utf8(&entry.0).is_none() || utf8(&entry.1).is_none() {
        #[expect(
            deprecated,
            reason = "prost has no other public way to name a decode error"
        )]
        return Err(DecodeError::new(
            "invalid string value: data is not UTF-8 encoded",
        ));
    }
    Ok(entry)
}

/// A map entry's body; as prost, an empty key or value is left out.
fn entry_len(key: &[u8], value: &[u8]) -> usize {
    bytes_len(field::ENTRY_KEY, key) + bytes_len(field::ENTRY_VALUE, value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::proto::event_store::client::uuid;

    /// The message as prost generates it for `map<string, string>`, to compare against.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(message, optional, tag = "1")]
        id: Option<Uuid>,
        #[prost(map = "string, string", tag = "2")]
        metadata: HashMap<String, String>,
        #[prost(bytes = "bytes", tag = "3")]
        custom_metadata: Bytes,
        #[prost(bytes = "bytes", tag = "4")]
        data: Bytes,
    }

    fn generated(metadata: &[(&str, &str)]) -> Generated {
        Generated {
            id: Some(Uuid {
                value: Some(uuid::Value::String(
                    "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned(),
                )),
            }),
            metadata: metadata
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            custom_metadata: Bytes::from_static(b"{\"user\":\"ada\"}"),
            data: Bytes::from_static(b"{\"total\":10}"),
        }
    }

    #[test]
    fn decodes_what_prost_encodes_and_encodes_what_prost_decodes() {
        let sent = generated(&[
            ("type", "OrderPlaced"),
            ("content-type", "application/json"),
            ("trace", "abc"),
            ("", "empty key"),
        ]);
        let decoded = ProposedMessage::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.id, sent.id);
        assert_eq!(decoded.metadata.event_type(), Some("OrderPlaced"));
        assert_eq!(decoded.metadata.content_type(), Some("application/json"));
        assert_eq!(
            (&decoded.custom_metadata, &decoded.data),
            (&sent.custom_metadata, &sent.data)
        );
        let bytes = decoded.encode_to_vec();
        assert_eq!(bytes.len(), decoded.encoded_len());
        assert_eq!(Generated::decode(bytes.as_slice()).unwrap(), sent);
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_and_missing_keys_stay_missing() {
        let mut bytes = generated(&[("type", "First")]).encode_to_vec();
        bytes.extend(generated(&[("type", "Second")]).encode_to_vec());
        let decoded = ProposedMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.metadata.event_type(), Some("Second"));
        assert_eq!(decoded.metadata.content_type(), None);
    }

    #[test]
    fn strings_that_are_not_utf8_and_truncated_entries_are_refused() {
        // Field 2, an entry of 4 bytes: key field 1, 2 bytes, not UTF-8.
        let not_utf8 = [0x12, 4, 0x0a, 2, 0xff, 0xfe];
        assert!(ProposedMessage::decode(&not_utf8[..]).is_err());
        assert!(Generated::decode(&not_utf8[..]).is_err(), "as prost");
        let truncated = [0x12, 9, 0x0a, 2, b'a', b'b'];
        assert!(ProposedMessage::decode(&truncated[..]).is_err());
    }

    #[test]
    fn collected_entries_land_where_the_decoder_puts_them() {
        let metadata: ProposedMetadata = [
            ("type".to_owned(), "E".to_owned()),
            (
                "content-type".to_owned(),
                "application/octet-stream".to_owned(),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            metadata,
            ProposedMetadata::new("E", "application/octet-stream")
        );
    }
}
