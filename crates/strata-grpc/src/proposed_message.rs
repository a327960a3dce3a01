//! `ProposedMessage`, the event of an Append or BatchAppend request (both protocols' messages
//! have the same fields, so one type serves both), with a hand-written decoder: the
//! `metadata` map is no `HashMap` of `String`s. Each entry is read in place from the
//! request's bytes; the two keys the server reads get their own fields (the event type as
//! the shared `EventType` the store takes, a known content type as a static string), other
//! entries are copied out (the server ignores them). A 1,000-event append so costs no map
//! and no reference-counted slice per metadata entry, and events whose type is the one
//! before them share it instead of allocating their own. Strings are UTF-8 as prost requires
//! (one equal to a known string needs no check; the others are checked), and a later entry
//! for a key replaces an earlier one, as in a map.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, bytes, check_wire_type, decode_key, decode_varint, message, skip_field,
};
use prost::{DecodeError, Message};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use strata_core::{ContentType, EventType};

use crate::convert::{CONTENT_TYPE_KEY, TYPE_KEY};
use crate::proto::event_store::client::{Uuid, uuid as wire};
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
    event_type: Option<EventType>,
    content_type: Option<Cow<'static, str>>,
    /// Any other entries (the server ignores them): a map, as prost's, so a request of
    /// many distinct keys decodes in linear time.
    other: HashMap<Bytes, Bytes>,
}

impl ProposedMetadata {
    /// The two entries every proposed event carries.
    pub(crate) fn new(
        event_type: impl Into<EventType>,
        content_type: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            event_type: Some(event_type.into()),
            content_type: Some(content_type.into()),
            other: HashMap::new(),
        }
    }

    /// The `type` entry, taken out (the store keeps it as it is).
    pub(crate) fn take_event_type(&mut self) -> Option<EventType> {
        self.event_type.take()
    }

    #[cfg(test)]
    pub(crate) fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    pub(crate) fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Records an entry read from the wire, refusing a half that is not UTF-8.
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        match key {
            key if key == TYPE_KEY.as_bytes() => {
                self.event_type = Some(shared_event_type(value)?);
            }
            key if key == CONTENT_TYPE_KEY.as_bytes() => {
                self.content_type = Some(match known_content_type(value) {
                    Some(known) => Cow::Borrowed(known),
                    None => Cow::Owned(checked_utf8(value)?.to_owned()),
                });
            }
            _ => {
                checked_utf8(key)?;
                let value = Bytes::copy_from_slice(checked_utf8(value)?.as_bytes());
                match self.other.get_mut(key) {
                    Some(old) => *old = value,
                    None => {
                        self.other.insert(Bytes::copy_from_slice(key), value);
                    }
                }
            }
        }
        Ok(())
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        [
            (
                TYPE_KEY.as_bytes(),
                self.event_type.as_deref().map(str::as_bytes),
            ),
            (
                CONTENT_TYPE_KEY.as_bytes(),
                self.content_type.as_deref().map(str::as_bytes),
            ),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .chain(self.other.iter().map(|(key, value)| (&key[..], &value[..])))
    }
}

thread_local! {
    /// The event type this thread decoded last: the events of an append (and the appends of
    /// one client) mostly repeat one type, and a repeat then costs a reference count instead
    /// of an allocation. One entry, replaced by each new type; never more memory than that.
    static LAST_EVENT_TYPE: RefCell<EventType> = RefCell::default();
}

/// `name` as an `EventType`: the last one this thread decoded when it is the same name
/// (then UTF-8 without a check), else a new one, checked, which becomes the last.
fn shared_event_type(name: &[u8]) -> Result<EventType, DecodeError> {
    LAST_EVENT_TYPE.with_borrow_mut(|last| {
        if last.as_bytes() != name {
            *last = EventType::from(checked_utf8(name)?);
        }
        Ok(last.clone())
    })
}

/// The content types clients send, as static strings.
fn known_content_type(value: &[u8]) -> Option<&'static str> {
    [ContentType::Json, ContentType::Binary]
        .into_iter()
        .map(|known| known.as_mime())
        .find(|known| known.as_bytes() == value)
}

impl FromIterator<(String, String)> for ProposedMetadata {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(entries: I) -> Self {
        let mut metadata = Self::default();
        for (key, value) in entries {
            metadata
                .insert(key.as_bytes(), value.as_bytes())
                .expect("a String is UTF-8");
        }
        metadata
    }
}

fn checked_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes)
        .map_err(|_| decode_error("invalid string value: data is not UTF-8 encoded"))
}

/// Field numbers (streams.proto).
mod field {
    pub(super) const ID: u32 = 1;
    pub(super) const METADATA: u32 = 2;
    pub(super) const CUSTOM_METADATA: u32 = 3;
    pub(super) const DATA: u32 = 4;
    pub(super) const ENTRY_KEY: u32 = 1;
    pub(super) const ENTRY_VALUE: u32 = 2;
    pub(super) const UUID_STRUCTURED: u32 = 1;
    pub(super) const UUID_STRING: u32 = 2;
    pub(super) const UUID_MOST_SIGNIFICANT: u32 = 1;
    pub(super) const UUID_LEAST_SIGNIFICANT: u32 = 2;
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
            field::ID => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let id = self.id.get_or_insert_with(Uuid::default);
                in_place(buf, |mut body| merge_uuid(id, &mut body, ctx))
            }
            field::METADATA => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                in_place(buf, |mut entry| {
                    let (key, value) = read_entry(&mut entry, ctx)?;
                    self.metadata.insert(key, value)
                })
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

#[expect(
    deprecated,
    reason = "prost has no other public way to name a decode error"
)]
fn decode_error(description: &'static str) -> DecodeError {
    DecodeError::new(description)
}

/// Reads a length-delimited field's length, then hands `read` its bytes as one slice: in
/// place when the buffer holds them contiguously (a request's `Bytes` always does), else
/// from a copy. The buffer is advanced past them either way.
fn in_place<T>(
    buf: &mut impl Buf,
    read: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let len = usize::try_from(decode_varint(buf)?)
        .map_err(|_| decode_error("length does not fit in memory"))?;
    if len > buf.remaining() {
        return Err(decode_error("buffer underflow"));
    }
    if buf.chunk().len() >= len {
        let read = read(&buf.chunk()[..len]);
        buf.advance(len);
        read
    } else {
        read(&buf.copy_to_bytes(len))
    }
}

/// A length-delimited field's bytes, from a slice.
fn slice<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(decode_varint(input)?)
        .map_err(|_| decode_error("length does not fit in memory"))?;
    if len > input.len() {
        return Err(decode_error("buffer underflow"));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

/// One map entry: a key and a value (empty when left out; the ones returned not yet checked
/// to be UTF-8); a later occurrence of a field replaces an earlier one, which must be UTF-8
/// as prost requires; unknown fields are skipped.
fn read_entry<'a>(
    entry: &mut &'a [u8],
    ctx: DecodeContext,
) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    let (mut key, mut value): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    while !entry.is_empty() {
        let (tag, wire_type) = decode_key(entry)?;
        match tag {
            field::ENTRY_KEY | field::ENTRY_VALUE => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let text = slice(entry)?;
                let half = if tag == field::ENTRY_KEY {
                    &mut key
                } else {
                    &mut value
                };
                // A repeated half replaces the one before, which prost checks as UTF-8
                // too; the last one is checked where it is used.
                if let Some(replaced) = half.replace(text) {
                    checked_utf8(replaced)?;
                }
            }
            _ => skip_field(wire_type, tag, entry, ctx.clone())?,
        }
    }
    Ok((key.unwrap_or_default(), value.unwrap_or_default()))
}

/// Merges a `UUID` message into `id` as prost's generated code does (a repeated `oneof`
/// case merges into the one present, the other case replaces it), without its nested calls.
fn merge_uuid(id: &mut Uuid, body: &mut &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(body)?;
        match tag {
            field::UUID_STRUCTURED => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let mut fields = slice(body)?;
                if !matches!(id.value, Some(wire::Value::Structured(_))) {
                    id.value = Some(wire::Value::Structured(wire::Structured::default()));
                }
                let Some(wire::Value::Structured(halves)) = &mut id.value else {
                    unreachable!("set just above");
                };
                while !fields.is_empty() {
                    let (tag, wire_type) = decode_key(&mut fields)?;
                    match tag {
                        field::UUID_MOST_SIGNIFICANT | field::UUID_LEAST_SIGNIFICANT => {
                            check_wire_type(WireType::Varint, wire_type)?;
                            let half = decode_varint(&mut fields)?.cast_signed();
                            if tag == field::UUID_MOST_SIGNIFICANT {
                                halves.most_significant_bits = half;
                            } else {
                                halves.least_significant_bits = half;
                            }
                        }
                        _ => skip_field(wire_type, tag, &mut fields, ctx.clone())?,
                    }
                }
            }
            field::UUID_STRING => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let text = checked_utf8(slice(body)?)?;
                id.value = Some(wire::Value::String(text.to_owned()));
            }
            _ => skip_field(wire_type, tag, body, ctx.clone())?,
        }
    }
    Ok(())
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

    /// Many distinct keys (a request may carry up to `append_bytes_max` + 1 MiB of them) are
    /// all kept, as prost's map keeps them, and a repeated key keeps its last value. They
    /// go into a map: a review found a `Vec` searched per entry, 13 s for these 20,000.
    #[test]
    fn many_distinct_metadata_keys_are_kept_as_prost_keeps_them() {
        let mut sent = generated(&[]);
        sent.metadata = (0..20_000)
            .map(|number| (format!("k{number}"), format!("v{number}")))
            .collect();
        let mut bytes = sent.encode_to_vec();
        // The first key again, with another value: the last one stands, as in prost's map.
        let repeated = generated(&[("k0", "again")]);
        bytes.extend(repeated.encode_to_vec());
        let prost = Generated::decode(bytes.as_slice()).unwrap();
        let ours = ProposedMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(prost.metadata.len(), 20_000);
        assert_eq!(prost.metadata["k0"], "again");
        let kept: HashMap<String, String> = ours
            .metadata
            .entries()
            .map(|(key, value)| {
                (
                    String::from_utf8(key.to_vec()).unwrap(),
                    String::from_utf8(value.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(kept, prost.metadata);
    }

    /// prost checks every occurrence of an entry's key and value to be UTF-8
    /// (`string::merge` each time), so an entry whose first key is not UTF-8 and whose
    /// second is `type` is refused, here as by prost (and KurrentDB's protobuf); a review
    /// found it accepted when only the last occurrence was checked.
    #[test]
    fn an_entry_with_a_non_utf8_key_replaced_later_is_refused_as_prost_refuses_it() {
        // Field 2, an entry: key 0xff, then key "type", then value "E".
        let entry = [
            0x0a, 1, 0xff, 0x0a, 4, b't', b'y', b'p', b'e', 0x12, 1, b'E',
        ];
        let mut bytes = vec![0x12, u8::try_from(entry.len()).unwrap()];
        bytes.extend(entry);
        assert!(
            Generated::decode(bytes.as_slice()).is_err(),
            "prost refuses it"
        );
        assert!(
            ProposedMessage::decode(bytes.as_slice()).is_err(),
            "accepted as type {:?}",
            ProposedMessage::decode(bytes.as_slice())
                .ok()
                .and_then(|decoded| decoded.metadata.event_type().map(str::to_owned))
        );
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

    /// Events of one type share one copy of it; another type gets its own, equal to what
    /// was sent.
    #[test]
    fn repeated_event_types_share_one_copy() {
        let event_type = |name: &str| {
            let bytes = generated(&[("type", name)]).encode_to_vec();
            let mut decoded = ProposedMessage::decode(bytes.as_slice()).unwrap();
            decoded.metadata.take_event_type().unwrap()
        };
        let first = event_type("OrderPlaced");
        let second = event_type("OrderPlaced");
        assert_eq!(first.as_ptr(), second.as_ptr(), "one copy");
        let other = event_type("OrderShipped");
        assert_eq!(other, "OrderShipped");
        let again = event_type("OrderPlaced");
        assert_eq!((&first, &again), (&second, &second));
        assert_ne!(again.as_ptr(), other.as_ptr());
        assert_eq!(event_type(""), "");
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

    /// Each half of each kind of entry is checked unless it equals a known string: a type
    /// or content type that is not UTF-8 is refused, as prost refuses it, even after the
    /// same type was decoded valid.
    #[test]
    fn every_half_of_every_entry_must_be_utf8() {
        let message = |key: &[u8], value: &[u8]| {
            let mut entry = vec![0x0a, u8::try_from(key.len()).unwrap()];
            entry.extend(key);
            entry.extend([0x12, u8::try_from(value.len()).unwrap()]);
            entry.extend(value);
            let mut bytes = vec![0x12, u8::try_from(entry.len()).unwrap()];
            bytes.extend(entry);
            bytes
        };
        let not_utf8: &[u8] = b"Order\xffPlaced";
        for (key, value) in [
            (&b"type"[..], not_utf8),
            (b"content-type", not_utf8),
            (b"trace", not_utf8),
            (not_utf8, b"value"),
        ] {
            let bytes = message(key, value);
            assert!(
                Generated::decode(bytes.as_slice()).is_err(),
                "prost refuses"
            );
            assert!(
                ProposedMessage::decode(bytes.as_slice()).is_err(),
                "{key:?} {value:?}"
            );
        }
        for (key, value) in [
            (&b"type"[..], &b"OrderPlaced"[..]),
            (b"content-type", b"application/json"),
            (b"content-type", b"text/plain"),
            (b"trace", b"abc"),
        ] {
            let bytes = message(key, value);
            assert_eq!(
                ProposedMessage::decode(bytes.as_slice())
                    .unwrap()
                    .encode_to_vec(),
                Generated::decode(bytes.as_slice()).unwrap().encode_to_vec(),
                "{key:?} {value:?}"
            );
        }
        // A valid type decoded first does not let an invalid one through after it.
        assert!(ProposedMessage::decode(message(b"type", not_utf8).as_slice()).is_err());
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

    /// The same message as prost's, decoded from `Bytes` (as the server's codec does), from
    /// a slice, and from a buffer in two pieces split inside every field (the copying path).
    #[test]
    fn every_kind_of_buffer_decodes_the_same() {
        let sent = generated(&[
            ("type", "OrderPlaced"),
            ("content-type", "text/plain"),
            ("trace", "abc"),
        ]);
        let bytes = sent.encode_to_vec();
        let from_slice = ProposedMessage::decode(bytes.as_slice()).unwrap();
        let from_bytes = ProposedMessage::decode(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(from_bytes, from_slice);
        for split in 1..bytes.len() {
            let (head, tail) = bytes.split_at(split);
            let chained = ProposedMessage::decode(head.chain(tail)).unwrap();
            assert_eq!(chained, from_slice, "split at {split}");
        }
        assert_eq!(from_slice.metadata.content_type(), Some("text/plain"));
        assert_eq!(
            Generated::decode(from_slice.encode_to_vec().as_slice()).unwrap(),
            sent
        );
    }

    #[test]
    fn unknown_fields_inside_an_entry_are_skipped_and_a_repeated_field_replaces() {
        // Field 2, an entry: key "type", an unknown varint field 3, value "A", value "B".
        let entry = [
            0x0a, 4, b't', b'y', b'p', b'e', 0x18, 7, 0x12, 1, b'A', 0x12, 1, b'B',
        ];
        let mut bytes = vec![0x12, u8::try_from(entry.len()).unwrap()];
        bytes.extend(entry);
        let decoded = ProposedMessage::decode(bytes.as_slice()).unwrap();
        let prost = Generated::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.metadata.event_type(), Some("B"));
        assert_eq!(prost.metadata.get("type").map(String::as_str), Some("B"));
    }

    #[test]
    fn truncated_and_mistyped_input_is_refused_as_prost_refuses_it() {
        let sent = generated(&[
            ("type", "OrderPlaced"),
            ("content-type", "application/json"),
        ])
        .encode_to_vec();
        for cut in 1..sent.len() {
            let truncated = &sent[..cut];
            assert_eq!(
                ProposedMessage::decode(truncated).is_err(),
                Generated::decode(truncated).is_err(),
                "cut at {cut}"
            );
        }
        // Field 2 as a varint instead of a length-delimited entry.
        assert!(ProposedMessage::decode(&[0x10, 1][..]).is_err());
        // An entry whose key is a varint.
        assert!(ProposedMessage::decode(&[0x12, 2, 0x08, 1][..]).is_err());
        // An entry's key longer than the entry.
        assert!(ProposedMessage::decode(&[0x12, 3, 0x0a, 5, b'a'][..]).is_err());
        // An entry longer than the message.
        assert!(ProposedMessage::decode(&[0x12, 0x80, 0x01, 0x0a][..]).is_err());
    }

    #[test]
    fn known_and_other_content_types_read_back() {
        for mime in ["application/json", "application/octet-stream", "text/csv"] {
            let decoded = ProposedMessage::decode(
                generated(&[("content-type", mime)])
                    .encode_to_vec()
                    .as_slice(),
            )
            .unwrap();
            assert_eq!(decoded.metadata.content_type(), Some(mime));
        }
    }

    /// Both UUID forms, repeated and mixed, with unknown fields, decode as prost decodes them.
    #[test]
    fn ids_in_either_form_decode_as_prost_decodes_them() {
        let structured = |high: i64, low: i64| Uuid {
            value: Some(uuid::Value::Structured(uuid::Structured {
                most_significant_bits: high,
                least_significant_bits: low,
            })),
        };
        let text = |text: &str| Uuid {
            value: Some(uuid::Value::String(text.to_owned())),
        };
        let ids = [
            structured(-1, i64::MIN),
            structured(0x0011_2233_4455_6677, 0x7788),
            text("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            text("not checked here"),
        ];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for first in &ids {
            for second in &ids {
                let with_id = |id: &Uuid| {
                    Generated {
                        id: Some(id.clone()),
                        ..Generated::default()
                    }
                    .encode_to_vec()
                };
                let mut bytes = with_id(first);
                bytes.extend(with_id(second));
                cases.push(bytes);
            }
        }
        // Only the high half, then only the low half: merged into one.
        let mut halves = vec![0x0a, 4, 0x0a, 2, 0x08, 5];
        halves.extend([0x0a, 4, 0x0a, 2, 0x10, 9]);
        cases.push(halves);
        // An unknown varint field in the UUID and in its halves.
        cases.push(vec![0x0a, 8, 0x18, 1, 0x0a, 4, 0x08, 3, 0x20, 4]);
        for bytes in cases {
            let ours = ProposedMessage::decode(bytes.as_slice()).unwrap();
            let prost = Generated::decode(bytes.as_slice()).unwrap();
            assert_eq!(ours.id, prost.id, "{bytes:?}");
        }
        for refused in [
            &[0x0a, 3, 0x12, 1, 0xff][..],    // a string id that is not UTF-8
            &[0x0a, 4, 0x0a, 2, 0x09, 1][..], // a half of the wrong wire type
            &[0x0a, 4, 0x0a, 5, 0x08, 1][..], // halves longer than the id
            &[0x08, 1][..],                   // the id as a varint
        ] {
            assert!(ProposedMessage::decode(refused).is_err(), "{refused:?}");
            assert!(
                Generated::decode(refused).is_err(),
                "prost too: {refused:?}"
            );
        }
    }
}
