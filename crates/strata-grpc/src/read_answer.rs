//! One answer of a Read call (`ReadResp` on the wire). An event is encoded by hand, once,
//! by the task reading the store: a page of events goes into one buffer, and each answer is
//! a slice of it that tonic copies into its frame. No wire message is built first, so no
//! metadata map, no `String` per metadata entry, no copy of the stream name; the UUID and
//! the `created` ticks are formatted on the stack, and every length is worked out once.
//! Every other answer is the generated `ReadResp`, encoded by prost.
//!
//! The bytes are those prost writes for the same `ReadResp` (fields in field-number order,
//! zero scalars left out, oneof members always written), except that the metadata map's
//! entries come in a fixed order (`type`, `content-type`, `created`) where prost follows
//! its `HashMap`; map order carries no meaning.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};
use prost::{DecodeError, Message};
use strata_core::RecordedEvent;
use strata_core::system_streams::ResolvedEvent;
use tonic::codec::BufferSettings;

#[cfg(test)]
use crate::convert::recorded_event;
use crate::convert::{CONTENT_TYPE_KEY, CREATED_KEY, TYPE_KEY, UuidFormat};
use crate::proto::event_store::client::streams::ReadResp;
use crate::proto::event_store::client::streams::read_resp::Content;
#[cfg(test)]
use crate::proto::event_store::client::streams::read_resp::{self, read_event};

/// Bytes of Read answers tonic gathers before handing them to HTTP/2 (its default).
const WRITE_BYTES: usize = 32 * 1024;

/// Room of tonic's buffer for Read answers: a write and the answer that crosses
/// [`WRITE_BYTES`], so the buffer does not grow (tonic's default 8 KiB grew three times per
/// write, copying what it held each time).
const ENCODE_BUFFER_BYTES: usize = WRITE_BYTES + 8 * 1024;

/// How tonic buffers Read answers.
pub(crate) fn encode_buffer_settings() -> BufferSettings {
    BufferSettings::new(ENCODE_BUFFER_BYTES, WRITE_BYTES)
}

/// One answer of a Read call, as the `Streams` server sends it.
#[derive(Debug)]
pub(crate) enum ReadAnswer {
    /// An event read (and the link it came through), already encoded: the bytes of the
    /// whole `ReadResp`. A page's answers are slices of one buffer.
    Event(Bytes),
    /// Any other answer (boxed: an answer moves through the call's channel and tonic's
    /// stream, and most answers are events).
    Other(Box<ReadResp>),
}

impl ReadAnswer {
    /// One event's answer, in a buffer of its own.
    pub(crate) fn event(resolved: &ResolvedEvent, format: UuidFormat) -> Self {
        let mut answers = Self::events(std::slice::from_ref(resolved), format);
        answers.pop().unwrap_or_default()
    }

    /// A page of events' answers (links resolved), encoded once, into one buffer.
    pub(crate) fn events(page: &[ResolvedEvent], format: UuidFormat) -> Vec<Self> {
        Self::encoded(page.iter().map(|resolved| {
            ReadEventWire::new(resolved.event.as_ref(), resolved.link.as_ref(), format)
        }))
    }

    /// A page of events read without resolving links, as [`ReadAnswer::events`].
    pub(crate) fn plain_events(page: &[RecordedEvent], format: UuidFormat) -> Vec<Self> {
        Self::encoded(
            page.iter()
                .map(|event| ReadEventWire::new(Some(event), None, format)),
        )
    }

    /// The answers of a page of events, in one buffer: each event's lengths, UUID and
    /// `created` text are worked out once, and the bytes are written in place.
    fn encoded<'a>(wires: impl Iterator<Item = ReadEventWire<'a>>) -> Vec<Self> {
        let wires: Vec<ReadEventWire<'a>> = wires.collect();
        let total: usize = wires.iter().map(ReadEventWire::answer_len).sum();
        let mut buffer = PageBuffer(Vec::with_capacity(total));
        let mut ends = Vec::with_capacity(wires.len());
        for wire in &wires {
            wire.encode_answer(&mut buffer);
            ends.push(buffer.0.len());
        }
        debug_assert_eq!(buffer.0.len(), total, "the lengths worked out are exact");
        // Exactly as long as its capacity: the `Bytes` takes the allocation as it is.
        let buffer = Bytes::from(buffer.0);
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let answer = Self::Event(buffer.slice(start..end));
                start = end;
                answer
            })
            .collect()
    }

    pub(crate) fn other(content: Content) -> Self {
        Self::Other(Box::new(ReadResp {
            content: Some(content),
        }))
    }

    /// The answer as the generated message (what a decoder builds).
    fn into_generated(self) -> ReadResp {
        match self {
            // Bytes this module encoded always decode.
            Self::Event(bytes) => ReadResp::decode(bytes).unwrap_or_default(),
            Self::Other(answer) => *answer,
        }
    }
}

impl Default for ReadAnswer {
    fn default() -> Self {
        Self::Other(Box::default())
    }
}

impl Message for ReadAnswer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Self::Event(bytes) => buf.put_slice(bytes),
            Self::Other(answer) => answer.encode_raw(buf),
        }
    }

    /// Decoding yields the generated message (the server never decodes its answers;
    /// this keeps the type a complete `Message`).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut answer = std::mem::take(self).into_generated();
        let merged = answer.merge_field(tag, wire_type, buf, ctx);
        *self = Self::Other(Box::new(answer));
        merged
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Event(bytes) => bytes.len(),
            Self::Other(answer) => answer.encoded_len(),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A read event as the generated message: the event (unset for a link whose target is
/// gone), the link it came through, and the position of what was read (the link's, if
/// any). What the hand encoding is checked against.
#[cfg(test)]
pub(crate) fn event_content(resolved: &ResolvedEvent, format: UuidFormat) -> Content {
    let wire = |event: &RecordedEvent| recorded_event(event, format);
    Content::Event(read_resp::ReadEvent {
        event: resolved.event.as_ref().map(wire),
        link: resolved.link.as_ref().map(wire),
        position: Some(read_event::Position::CommitPosition(
            resolved.original().position.0,
        )),
    })
}

/// Field numbers (streams.proto, shared.proto).
mod field {
    /// `ReadResp.event`
    pub(super) const READ_RESP_EVENT: u32 = 1;
    /// `ReadEvent.event`, `.link`, `.commit_position`
    pub(super) const READ_EVENT_EVENT: u32 = 1;
    pub(super) const READ_EVENT_LINK: u32 = 2;
    pub(super) const READ_EVENT_COMMIT_POSITION: u32 = 3;
    /// `RecordedEvent` fields
    pub(super) const ID: u32 = 1;
    pub(super) const STREAM_IDENTIFIER: u32 = 2;
    pub(super) const STREAM_REVISION: u32 = 3;
    pub(super) const PREPARE_POSITION: u32 = 4;
    pub(super) const COMMIT_POSITION: u32 = 5;
    pub(super) const METADATA: u32 = 6;
    pub(super) const CUSTOM_METADATA: u32 = 7;
    pub(super) const DATA: u32 = 8;
    /// `StreamIdentifier.stream_name`
    pub(super) const STREAM_NAME: u32 = 3;
    /// `UUID.structured`, `UUID.string`; `Structured`'s two halves
    pub(super) const UUID_STRUCTURED: u32 = 1;
    pub(super) const UUID_STRING: u32 = 2;
    pub(super) const MOST_SIGNIFICANT_BITS: u32 = 1;
    pub(super) const LEAST_SIGNIFICANT_BITS: u32 = 2;
    /// A map entry's key and value
    pub(super) const ENTRY_KEY: u32 = 1;
    pub(super) const ENTRY_VALUE: u32 = 2;
}

/// `ReadEvent`: the event, the link, the commit position (a oneof member, always written).
struct ReadEventWire<'a> {
    event: Option<RecordedWire<'a>>,
    link: Option<RecordedWire<'a>>,
    position: u64,
    body_len: usize,
}

impl<'a> ReadEventWire<'a> {
    /// `event` is unset for a link whose target is gone; the position is the link's, if any
    /// (as `ResolvedEvent::original`).
    fn new(
        event: Option<&'a RecordedEvent>,
        link: Option<&'a RecordedEvent>,
        format: UuidFormat,
    ) -> Self {
        let position = link.or(event).map_or(0, |original| original.position.0);
        let wire = |event: &'a RecordedEvent| RecordedWire::new(event, format);
        let event = event.map(wire);
        let link = link.map(wire);
        let recorded = |tag, event: &Option<RecordedWire<'_>>| {
            event
                .as_ref()
                .map_or(0, |event| message_len(tag, event.body_len))
        };
        let body_len = recorded(field::READ_EVENT_EVENT, &event)
            + recorded(field::READ_EVENT_LINK, &link)
            + key_len(field::READ_EVENT_COMMIT_POSITION)
            + encoded_len_varint(position);
        Self {
            event,
            link,
            position,
            body_len,
        }
    }

    /// Bytes of the whole `ReadResp`.
    fn answer_len(&self) -> usize {
        message_len(field::READ_RESP_EVENT, self.body_len)
    }

    /// The whole `ReadResp`: its `event` field holding this `ReadEvent`.
    fn encode_answer(&self, buf: &mut PageBuffer) {
        buf.header(field::READ_RESP_EVENT, self.body_len);
        for (tag, event) in [
            (field::READ_EVENT_EVENT, &self.event),
            (field::READ_EVENT_LINK, &self.link),
        ] {
            if let Some(event) = event {
                buf.header(tag, event.body_len);
                event.encode(buf);
            }
        }
        // A oneof member: written even when zero.
        buf.key(field::READ_EVENT_COMMIT_POSITION, WireType::Varint);
        buf.varint(self.position);
    }
}

/// `RecordedEvent`, with its text fields formatted and its length worked out once.
struct RecordedWire<'a> {
    event: &'a RecordedEvent,
    id: UuidWire,
    created: Decimal,
    body_len: usize,
}

impl<'a> RecordedWire<'a> {
    fn new(event: &'a RecordedEvent, format: UuidFormat) -> Self {
        let mut wire = Self {
            event,
            id: UuidWire::new(event.id.0, format),
            created: Decimal::new(event.created.unix_ticks()),
            body_len: 0,
        };
        wire.body_len = wire.compute_body_len();
        wire
    }

    /// The three system metadata entries, in a fixed order.
    fn metadata(&self) -> [(&'static str, &[u8]); 3] {
        [
            (TYPE_KEY, self.event.event_type.as_bytes()),
            (
                CONTENT_TYPE_KEY,
                self.event.content_type.as_mime().as_bytes(),
            ),
            (CREATED_KEY, self.created.as_bytes()),
        ]
    }

    fn compute_body_len(&self) -> usize {
        let event = self.event;
        let position = event.position.0;
        message_len(field::ID, self.id.body_len())
            + message_len(
                field::STREAM_IDENTIFIER,
                bytes_len(field::STREAM_NAME, event.stream.as_str().as_bytes()),
            )
            + uint64_len(field::STREAM_REVISION, event.revision.0)
            + uint64_len(field::PREPARE_POSITION, position)
            + uint64_len(field::COMMIT_POSITION, position)
            + self
                .metadata()
                .iter()
                .map(|(key, value)| message_len(field::METADATA, entry_len(key, value)))
                .sum::<usize>()
            + bytes_len(field::CUSTOM_METADATA, &event.metadata)
            + bytes_len(field::DATA, &event.data)
    }

    fn encode(&self, buf: &mut PageBuffer) {
        let event = self.event;
        let position = event.position.0;
        buf.header(field::ID, self.id.body_len());
        self.id.encode(buf);
        let name = event.stream.as_str().as_bytes();
        buf.header(
            field::STREAM_IDENTIFIER,
            bytes_len(field::STREAM_NAME, name),
        );
        buf.bytes(field::STREAM_NAME, name);
        buf.uint64(field::STREAM_REVISION, event.revision.0);
        buf.uint64(field::PREPARE_POSITION, position);
        buf.uint64(field::COMMIT_POSITION, position);
        for (key, value) in self.metadata() {
            buf.header(field::METADATA, entry_len(key, value));
            buf.bytes(field::ENTRY_KEY, key.as_bytes());
            buf.bytes(field::ENTRY_VALUE, value);
        }
        buf.bytes(field::CUSTOM_METADATA, &event.metadata);
        buf.bytes(field::DATA, &event.data);
    }
}

/// A map entry `string` → `string`; as prost, an empty key or value is left out.
fn entry_len(key: &str, value: &[u8]) -> usize {
    bytes_len(field::ENTRY_KEY, key.as_bytes()) + bytes_len(field::ENTRY_VALUE, value)
}

/// `UUID`: the structured halves, or the hyphenated text.
enum UuidWire {
    Structured { high: u64, low: u64 },
    Text([u8; uuid::fmt::Hyphenated::LENGTH]),
}

impl UuidWire {
    fn new(id: uuid::Uuid, format: UuidFormat) -> Self {
        match format {
            UuidFormat::Structured => {
                let (high, low) = id.as_u64_pair();
                Self::Structured { high, low }
            }
            UuidFormat::String => {
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                id.hyphenated().encode_lower(&mut text);
                Self::Text(text)
            }
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Structured { high, low } => {
                message_len(field::UUID_STRUCTURED, structured_len(*high, *low))
            }
            Self::Text(text) => {
                key_len(field::UUID_STRING) + encoded_len_varint(text.len() as u64) + text.len()
            }
        }
    }

    fn encode(&self, buf: &mut PageBuffer) {
        match self {
            Self::Structured { high, low } => {
                buf.header(field::UUID_STRUCTURED, structured_len(*high, *low));
                // int64 on the wire is the two's-complement value as a varint: the bits.
                buf.uint64(field::MOST_SIGNIFICANT_BITS, *high);
                buf.uint64(field::LEAST_SIGNIFICANT_BITS, *low);
            }
            // A oneof member: written even when empty (it never is).
            Self::Text(text) => {
                buf.header(field::UUID_STRING, text.len());
                buf.0.extend_from_slice(text);
            }
        }
    }
}

fn structured_len(high: u64, low: u64) -> usize {
    uint64_len(field::MOST_SIGNIFICANT_BITS, high) + uint64_len(field::LEAST_SIGNIFICANT_BITS, low)
}

/// A signed integer as decimal text, on the stack (`itoa`: two digits per step).
struct Decimal {
    digits: [u8; 20],
    len: u8,
}

impl Decimal {
    fn new(value: i64) -> Self {
        let mut text = itoa::Buffer::new();
        let text = text.format(value).as_bytes();
        let mut digits = [0; 20];
        digits[..text.len()].copy_from_slice(text);
        Self {
            digits,
            len: text.len() as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }
}

/// A page's answers, written front to back into a buffer sized from their lengths (so it
/// never grows). Every key here has a field number below 16: one byte.
struct PageBuffer(Vec<u8>);

impl PageBuffer {
    fn key(&mut self, tag: u32, wire_type: WireType) {
        debug_assert!(tag < 16, "a one-byte key");
        self.0.push(((tag << 3) | wire_type as u32) as u8);
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn header(&mut self, tag: u32, body_len: usize) {
        self.key(tag, WireType::LengthDelimited);
        self.varint(body_len as u64);
    }

    /// A `bytes` or `string` field; left out when empty, as proto3 wants.
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.header(tag, value.len());
            self.0.extend_from_slice(value);
        }
    }

    /// A `uint64` (or `int64`, as its bits) field; left out when zero, as proto3 wants.
    fn uint64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.key(tag, WireType::Varint);
            self.varint(value);
        }
    }
}

/// A length-delimited field of `body_len` bytes, key and length included.
pub(crate) fn message_len(tag: u32, body_len: usize) -> usize {
    key_len(tag) + encoded_len_varint(body_len as u64) + body_len
}

pub(crate) fn put_message_header(tag: u32, body_len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(body_len as u64, buf);
}

/// A `bytes` or `string` field; left out when empty, as proto3 wants.
pub(crate) fn bytes_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        message_len(tag, value.len())
    }
}

pub(crate) fn put_bytes(tag: u32, value: &[u8], buf: &mut impl BufMut) {
    if !value.is_empty() {
        put_message_header(tag, value.len(), buf);
        buf.put_slice(value);
    }
}

/// A `uint64` (or `int64`, as its bits) field; left out when zero, as proto3 wants.
fn uint64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::bytes::Bytes;
    use strata_core::{ContentType, EventId, Position, Revision, StreamName, Timestamp};

    use super::*;

    fn recorded(position: u64, revision: u64, ticks_nanos: i64) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("order-42").unwrap(),
            revision: Revision(revision),
            position: Position(position),
            id: EventId::new_random(),
            event_type: "OrderPlaced".to_owned(),
            content_type: ContentType::Json,
            data: Bytes::from_static(b"{\"total\":10}"),
            metadata: Bytes::from_static(b"{\"user\":\"ada\"}"),
            created: Timestamp(ticks_nanos),
        }
    }

    /// Decodes `answer`'s bytes as clients do, with the generated message.
    fn decoded(answer: &ReadAnswer) -> ReadResp {
        let bytes = answer.encode_to_vec();
        assert_eq!(bytes.len(), answer.encoded_len(), "encoded_len is exact");
        ReadResp::decode(bytes.as_slice()).expect("a valid ReadResp")
    }

    fn generated(resolved: &ResolvedEvent, format: UuidFormat) -> ReadResp {
        ReadResp {
            content: Some(event_content(resolved, format)),
        }
    }

    #[test]
    fn events_decode_as_the_generated_answer_in_both_uuid_forms() {
        let cases = [
            recorded(1_234_567, 89, 1_764_800_000_123_456_700),
            // Zero scalars are left out, and the decoder reads them back as zero.
            recorded(0, 0, 0),
            recorded(u64::MAX, u64::MAX, -1_000),
            recorded(1 << 40, 3, i64::MIN),
        ];
        for event in cases {
            for format in [UuidFormat::Structured, UuidFormat::String] {
                let resolved = ResolvedEvent::plain(event.clone());
                let answer = ReadAnswer::event(&resolved, format);
                assert_eq!(decoded(&answer), generated(&resolved, format));
            }
        }
    }

    #[test]
    fn each_answer_of_a_page_decodes_as_its_generated_answer() {
        let mut large = recorded(77, 2, 3);
        // Lengths past one varint byte at every level.
        large.data = Bytes::from(vec![b'x'; 70_000]);
        let link = RecordedEvent {
            stream: StreamName::new("$ce-order").unwrap(),
            event_type: "$>".to_owned(),
            ..recorded(90, 1, 4)
        };
        let page = vec![
            ResolvedEvent::plain(recorded(1, 0, 1)),
            ResolvedEvent::plain(large),
            ResolvedEvent {
                event: Some(recorded(5, 3, 2)),
                link: Some(link),
            },
            ResolvedEvent::plain(recorded(u64::MAX, 7, -5)),
        ];
        for format in [UuidFormat::Structured, UuidFormat::String] {
            let answers = ReadAnswer::events(&page, format);
            assert_eq!(answers.len(), page.len());
            for (answer, resolved) in answers.iter().zip(&page) {
                assert_eq!(decoded(answer), generated(resolved, format));
            }
        }
        assert!(ReadAnswer::events(&[], UuidFormat::String).is_empty());
    }

    #[test]
    fn events_read_without_links_encode_as_plain_resolved_events() {
        let page = vec![recorded(1, 0, 1), recorded(2, 1, 2), recorded(0, 0, 0)];
        let resolved: Vec<ResolvedEvent> = page.iter().cloned().map(ResolvedEvent::plain).collect();
        for format in [UuidFormat::Structured, UuidFormat::String] {
            let plain = ReadAnswer::plain_events(&page, format);
            let through_links = ReadAnswer::events(&resolved, format);
            assert_eq!(plain.len(), page.len());
            for ((plain, through_links), resolved) in
                plain.iter().zip(&through_links).zip(&resolved)
            {
                assert_eq!(plain.encode_to_vec(), through_links.encode_to_vec());
                assert_eq!(decoded(plain), generated(resolved, format));
            }
        }
    }

    #[test]
    fn links_and_missing_targets_decode_as_the_generated_answer() {
        let mut link = recorded(900, 4, 5_000);
        link.stream = StreamName::new("$ce-order").unwrap();
        link.event_type = "$>".to_owned();
        link.content_type = ContentType::Binary;
        link.metadata = Bytes::new();
        let both = ResolvedEvent {
            event: Some(recorded(100, 0, 7)),
            link: Some(link.clone()),
        };
        let gone = ResolvedEvent {
            event: None,
            link: Some(link),
        };
        for resolved in [both, gone] {
            let answer = ReadAnswer::event(&resolved, UuidFormat::String);
            assert_eq!(decoded(&answer), generated(&resolved, UuidFormat::String));
        }
    }

    #[test]
    fn the_system_metadata_is_what_clients_read() {
        let event = recorded(10, 1, 1_764_800_000_123_456_700);
        let id = event.id;
        let answer = ReadAnswer::event(&ResolvedEvent::plain(event), UuidFormat::String);
        let Some(Content::Event(read)) = decoded(&answer).content else {
            panic!("an event answer");
        };
        let recorded = read.event.expect("the event");
        let expected: HashMap<String, String> = [
            ("type", "OrderPlaced"),
            ("content-type", "application/json"),
            ("created", "17648000001234567"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(recorded.metadata, expected);
        assert_eq!(
            &recorded.stream_identifier.unwrap().stream_name[..],
            b"order-42"
        );
        let Some(crate::proto::event_store::client::uuid::Value::String(text)) =
            recorded.id.and_then(|id| id.value)
        else {
            panic!("a string UUID");
        };
        assert_eq!(text, id.to_string());
    }

    #[test]
    fn decimals_match_the_standard_formatting() {
        for value in [
            0,
            7,
            -7,
            10,
            99,
            100,
            i64::MAX,
            i64::MIN,
            17_648_000_001_234_567,
        ] {
            assert_eq!(Decimal::new(value).as_bytes(), value.to_string().as_bytes());
        }
    }

    #[test]
    fn other_answers_are_prost_encoded_and_decoding_yields_the_generated_message() {
        let other = ReadAnswer::other(Content::LastStreamPosition(17));
        assert_eq!(
            decoded(&other),
            ReadResp {
                content: Some(Content::LastStreamPosition(17))
            }
        );
        let event = ReadAnswer::event(
            &ResolvedEvent::plain(recorded(5, 1, 2)),
            UuidFormat::Structured,
        );
        let ReadAnswer::Other(merged) =
            ReadAnswer::decode(event.encode_to_vec().as_slice()).expect("decodes")
        else {
            panic!("decoding yields the generated message");
        };
        assert_eq!(*merged, decoded(&event));
    }
}
