//! The on-disk format of segments and frames, drawn byte by byte in `docs/ON_DISK_FORMAT.md`.
//! All integers are little-endian. Frames are 8-byte aligned and never straddle segments.

use bytes::Bytes;
use strata_core::{ContentType, EventId, Position, RecordedEvent, Revision, StreamName, Timestamp};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"STRATSEG";
/// Version written into new segments: 2 = the first event frame of each group may carry a
/// sync mark. Version 1 segments (no marks) are still read.
pub(crate) const FORMAT_VERSION: u32 = 2;
pub(crate) const FORMAT_VERSION_OLDEST: u32 = 1;
/// First version whose segments may hold frames with a sync mark.
pub(crate) const FORMAT_VERSION_SYNC_MARKS: u32 = 2;
/// Version of a segment rewritten by a scavenge: it may hold skip frames (kind 3) over
/// removed records, so a build that knows only versions 1 and 2 refuses it.
pub(crate) const FORMAT_VERSION_SCAVENGED: u32 = 3;
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 64;

/// Smallest segment a store may have: room for the header and for events of 64 KiB.
pub(crate) const SEGMENT_SIZE_BYTES_MIN: u64 = 128 * 1024;
/// Largest segment: frame lengths and offsets inside a segment are 32-bit.
pub(crate) const SEGMENT_SIZE_BYTES_MAX: u64 = (u32::MAX as u64) & !7;

pub(crate) const FRAME_ALIGN_BYTES: usize = 8;
/// len + crc + kind/flags/reserved + trailer.
pub(crate) const FRAME_MIN_BYTES: usize = 16;
/// Fixed part of an event frame before the variable fields.
pub(crate) const EVENT_HEADER_BYTES: usize = 56;
/// The sync mark (u64) a flagged event frame carries after its fixed part.
pub(crate) const SYNC_MARK_BYTES: usize = 8;
const TRAILER_BYTES: usize = 4;

pub(crate) const KIND_EVENT: u8 = 1;
pub(crate) const KIND_PADDING: u8 = 2;
/// Written by a scavenge over a run of removed records: only its 12-byte head and its
/// trailer are stored, the bytes between are a hole (zeros).
pub(crate) const KIND_SKIP: u8 = 3;
/// Bytes of a skip frame's head (length, checksum, kind, flags, two reserved bytes).
pub(crate) const SKIP_HEAD_BYTES: usize = 12;

/// The last frame of a transaction: the transaction is visible only once it is on disk.
pub(crate) const FLAG_COMMIT: u8 = 1;
pub(crate) const FLAG_JSON: u8 = 2;
/// The frame carries a sync mark: when it was written, the log before that position was
/// durable. Set on the first event frame of each group.
pub(crate) const FLAG_SYNC_MARK: u8 = 4;
const FLAGS_KNOWN: u8 = FLAG_COMMIT | FLAG_JSON | FLAG_SYNC_MARK;

/// Revision recorded for a tombstone (the contract's value, stored as is).
pub(crate) const TOMBSTONE_REVISION: u64 = strata_core::TOMBSTONE_REVISION;

pub(crate) fn align_up(bytes: usize) -> usize {
    bytes.div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Checksum of a frame: its length word, then everything after the checksum word.
fn frame_checksum(frame: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&frame[0..4]);
    crc32c::crc32c_append(crc, &frame[8..])
}

/// The 64-byte header at the start of every segment file.
pub(crate) fn encode_segment_header(segment_index: u64, segment_size_bytes: u64) -> [u8; 64] {
    encode_segment_header_of_version(segment_index, segment_size_bytes, FORMAT_VERSION)
}

/// The segment header with an explicit format version (a scavenged copy is version 3).
pub(crate) fn encode_segment_header_of_version(
    segment_index: u64,
    segment_size_bytes: u64,
    version: u32,
) -> [u8; 64] {
    let mut header = [0u8; 64];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[16..24].copy_from_slice(&segment_index.to_le_bytes());
    header[24..32].copy_from_slice(&segment_size_bytes.to_le_bytes());
    header[32..40].copy_from_slice(&(segment_index * segment_size_bytes).to_le_bytes());
    let crc = crc32c::crc32c(&header[0..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header and returns its format version; the error says what is wrong.
pub(crate) fn check_segment_header(
    header: &[u8],
    segment_index: u64,
    segment_size_bytes: u64,
) -> Result<u32, String> {
    if header.len() < 64 || &header[0..8] != SEGMENT_MAGIC {
        return Err("it does not start with the segment magic".into());
    }
    if read_u32(header, 60) != crc32c::crc32c(&header[0..60]) {
        return Err("its header fails its checksum".into());
    }
    let version = read_u32(header, 8);
    if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION_SCAVENGED).contains(&version) {
        return Err(format!(
            "format version {version} is not supported (this build reads \
             {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION_SCAVENGED}); open it with a newer Strata"
        ));
    }
    if read_u64(header, 16) != segment_index {
        return Err(format!("its header names segment {}", read_u64(header, 16)));
    }
    if read_u64(header, 24) != segment_size_bytes {
        return Err(format!(
            "it was written with segment size {} bytes, this store uses {segment_size_bytes}",
            read_u64(header, 24)
        ));
    }
    Ok(version)
}

/// The segment size a header records, if the header is intact and the size is one a
/// store can have (a damaged size must never become a divisor or a limit).
pub(crate) fn recorded_segment_size(header: &[u8]) -> Result<u64, String> {
    if header.len() < 64 || &header[0..8] != SEGMENT_MAGIC {
        return Err("it does not start with the segment magic".into());
    }
    if read_u32(header, 60) != crc32c::crc32c(&header[0..60]) {
        return Err("its header fails its checksum".into());
    }
    let size_bytes = read_u64(header, 24);
    check_segment_size(size_bytes).map(|()| size_bytes)
}

/// A segment size must be a multiple of 8 between the bounds.
pub(crate) fn check_segment_size(size_bytes: u64) -> Result<(), String> {
    if !size_bytes.is_multiple_of(8)
        || !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&size_bytes)
    {
        return Err(format!(
            "segment size {size_bytes} is not a multiple of 8 between \
             {SEGMENT_SIZE_BYTES_MIN} and {SEGMENT_SIZE_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

/// What one event frame holds, borrowed from a buffer.
pub(crate) struct EventFrame<'a> {
    pub flags: u8,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub revision: u64,
    pub id: u128,
    pub created_nanos: i64,
    pub data_range: std::ops::Range<usize>,
    pub metadata_range: std::ops::Range<usize>,
    /// The sync mark, on the first event frame of a group.
    pub synced_end: Option<u64>,
}

impl EventFrame<'_> {
    pub(crate) fn is_commit(&self) -> bool {
        self.flags & FLAG_COMMIT != 0
    }

    /// Builds the owned event; `frame` must be the `Bytes` the frame was parsed from.
    pub(crate) fn to_recorded(
        &self,
        frame: &Bytes,
        position: u64,
        names: &mut StreamNameCache,
    ) -> RecordedEvent {
        self.to_recorded_at(frame, 0, position, names)
    }

    /// Builds the owned event of a frame parsed from `bytes[frame_start..]`: its data and
    /// metadata are slices of `bytes`.
    pub(crate) fn to_recorded_at(
        &self,
        bytes: &Bytes,
        frame_start: usize,
        position: u64,
        names: &mut StreamNameCache,
    ) -> RecordedEvent {
        let shifted =
            |range: &std::ops::Range<usize>| frame_start + range.start..frame_start + range.end;
        RecordedEvent {
            stream: names.get(self.stream),
            revision: Revision(self.revision),
            position: Position(position),
            id: EventId::from_u128(self.id),
            event_type: self.event_type.to_owned(),
            content_type: if self.flags & FLAG_JSON != 0 {
                ContentType::Json
            } else {
                ContentType::Binary
            },
            data: bytes.slice(shifted(&self.data_range)),
            metadata: bytes.slice(shifted(&self.metadata_range)),
            created: Timestamp(self.created_nanos),
        }
    }
}

/// Reuses the stream name built last: consecutive frames are often of one stream, and a
/// shared name saves an allocation per event read. A cache made by
/// [`StreamNameCache::remembering`] also keeps every name it built (up to
/// [`REMEMBERED_NAMES_MAX`]): a sparse read meets the same streams again and again, just
/// not one after the other.
#[derive(Default)]
pub(crate) struct StreamNameCache {
    last: Option<StreamName>,
    remembered: Option<hashbrown::HashSet<StreamName>>,
}

/// Names a remembering cache holds at most; it starts over when full.
const REMEMBERED_NAMES_MAX: usize = 4_096;

impl StreamNameCache {
    pub(crate) fn remembering() -> Self {
        Self {
            last: None,
            remembered: Some(hashbrown::HashSet::new()),
        }
    }

    pub(crate) fn get(&mut self, name: &str) -> StreamName {
        if let Some(last) = &self.last
            && last.as_str() == name
        {
            return last.clone();
        }
        let shared = match &mut self.remembered {
            None => StreamName::from_stored(name),
            Some(remembered) => match remembered.get(name) {
                Some(known) => known.clone(),
                None => {
                    let fresh = StreamName::from_stored(name);
                    // A read of one stream (or of one event) never builds the set.
                    if let Some(last) = &self.last {
                        if remembered.len() >= REMEMBERED_NAMES_MAX {
                            remembered.clear();
                        }
                        if remembered.is_empty() {
                            remembered.insert(last.clone());
                        }
                        remembered.insert(fresh.clone());
                    }
                    fresh
                }
            },
        };
        self.last = Some(shared.clone());
        shared
    }
}

/// An event record ready to encode.
pub(crate) struct EventRecord<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub id: u128,
    pub event_type: &'a str,
    pub json: bool,
    pub created_nanos: i64,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    pub commit: bool,
}

impl EventRecord<'_> {
    /// Size of this record's frame, with a sync mark or without.
    pub(crate) fn frame_bytes_marked(&self, sync_mark: bool) -> usize {
        align_up(
            EVENT_HEADER_BYTES
                + if sync_mark { SYNC_MARK_BYTES } else { 0 }
                + self.stream.len()
                + self.event_type.len()
                + self.data.len()
                + self.metadata.len()
                + TRAILER_BYTES,
        )
    }
}

/// Appends the frame of `record` to `buffer`; returns the frame's length.
#[cfg(test)]
pub(crate) fn encode_event(buffer: &mut Vec<u8>, record: &EventRecord<'_>) -> usize {
    encode_event_marked(buffer, record, None)
}

/// Appends the frame of `record`, carrying `synced_end` as its sync mark if given.
/// Inlined into the writer's one caller, as the compiler chose to until the code around
/// it changed (a call per event costs ≈ 35 instructions more, measured).
#[inline]
pub(crate) fn encode_event_marked(
    buffer: &mut Vec<u8>,
    record: &EventRecord<'_>,
    synced_end: Option<u64>,
) -> usize {
    let start = buffer.len();
    let frame_bytes = record.frame_bytes_marked(synced_end.is_some());
    let frame_len = u32::try_from(frame_bytes).unwrap_or(u32::MAX);
    let mut flags = 0;
    if record.commit {
        flags |= FLAG_COMMIT;
    }
    if record.json {
        flags |= FLAG_JSON;
    }
    if synced_end.is_some() {
        flags |= FLAG_SYNC_MARK;
    }
    let stream_len = u16::try_from(record.stream.len()).unwrap_or(u16::MAX);
    let type_len = u16::try_from(record.event_type.len()).unwrap_or(u16::MAX);
    let data_len = u32::try_from(record.data.len()).unwrap_or(u32::MAX);
    let metadata_len = u32::try_from(record.metadata.len()).unwrap_or(u32::MAX);
    buffer.reserve(frame_bytes);
    buffer.extend_from_slice(&frame_len.to_le_bytes());
    buffer.extend_from_slice(&[0u8; 4]);
    buffer.extend_from_slice(&[KIND_EVENT, flags]);
    buffer.extend_from_slice(&stream_len.to_le_bytes());
    buffer.extend_from_slice(&type_len.to_le_bytes());
    buffer.extend_from_slice(&[0u8; 2]);
    buffer.extend_from_slice(&record.revision.to_le_bytes());
    buffer.extend_from_slice(&record.id.to_be_bytes());
    buffer.extend_from_slice(&record.created_nanos.to_le_bytes());
    buffer.extend_from_slice(&data_len.to_le_bytes());
    buffer.extend_from_slice(&metadata_len.to_le_bytes());
    if let Some(synced_end) = synced_end {
        buffer.extend_from_slice(&synced_end.to_le_bytes());
    }
    buffer.extend_from_slice(record.stream.as_bytes());
    buffer.extend_from_slice(record.event_type.as_bytes());
    buffer.extend_from_slice(record.data);
    buffer.extend_from_slice(record.metadata);
    buffer.resize(start + frame_bytes - TRAILER_BYTES, 0);
    buffer.extend_from_slice(&frame_len.to_le_bytes());
    let crc = frame_checksum(&buffer[start..]);
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    frame_bytes
}

/// Appends a padding frame of exactly `frame_bytes` (a multiple of 8, at least 16).
pub(crate) fn encode_padding(buffer: &mut Vec<u8>, frame_bytes: usize) {
    let start = buffer.len();
    let frame_len = u32::try_from(frame_bytes).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&frame_len.to_le_bytes());
    buffer.extend_from_slice(&[0u8; 4]);
    buffer.push(KIND_PADDING);
    buffer.resize(start + frame_bytes - TRAILER_BYTES, 0);
    buffer.extend_from_slice(&frame_len.to_le_bytes());
    let crc = frame_checksum(&buffer[start..]);
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The length word is zero: nothing was ever written here.
    Empty,
    /// The buffer holds only part of the frame; `needed` bytes are required.
    Incomplete { needed: usize },
    /// The frame is malformed or fails its checksum.
    Invalid(&'static str),
    /// A skip frame (written by a scavenge over removed records) of this many bytes, its
    /// head checked: the next frame starts that far on. Its body is a hole, never read.
    Skip(usize),
}

/// A frame read from a buffer.
pub(crate) enum Frame<'a> {
    Event(EventFrame<'a>),
    Padding,
}

/// Length of the frame starting at `bytes[0]`, checked for shape but not checksum.
pub(crate) fn frame_length(bytes: &[u8], room_bytes: usize) -> Result<usize, FrameError> {
    if bytes.len() < 4 {
        return Err(FrameError::Incomplete {
            needed: FRAME_MIN_BYTES,
        });
    }
    let frame_len = read_u32(bytes, 0) as usize;
    if frame_len == 0 {
        return Err(FrameError::Empty);
    }
    if frame_len < FRAME_MIN_BYTES
        || !frame_len.is_multiple_of(FRAME_ALIGN_BYTES)
        || frame_len > room_bytes
    {
        return Err(FrameError::Invalid("its length word is impossible"));
    }
    if bytes.len() >= SKIP_HEAD_BYTES && bytes[8] == KIND_SKIP {
        return check_skip_head(bytes, frame_len);
    }
    if bytes.len() < frame_len {
        return Err(FrameError::Incomplete { needed: frame_len });
    }
    Ok(frame_len)
}

/// Checksum of a skip frame: its length word, then its kind, flags and reserved bytes.
fn skip_checksum(head: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&head[0..4]);
    crc32c::crc32c_append(crc, &head[8..SKIP_HEAD_BYTES])
}

fn check_skip_head(head: &[u8], frame_len: usize) -> Result<usize, FrameError> {
    if head[9] != 0 || head[10] != 0 || head[11] != 0 {
        return Err(FrameError::Invalid("its flags are unknown"));
    }
    if read_u32(head, 4) != skip_checksum(head) {
        return Err(FrameError::Invalid("it fails its checksum"));
    }
    Err(FrameError::Skip(frame_len))
}

/// The head of a skip frame covering `frame_bytes` (a multiple of 8, at least 16); its
/// trailer ([`encode_skip_trailer`]) goes in the last 4 bytes of the run.
pub(crate) fn encode_skip_head(frame_bytes: usize) -> [u8; SKIP_HEAD_BYTES] {
    let mut head = [0u8; SKIP_HEAD_BYTES];
    let frame_len = u32::try_from(frame_bytes).unwrap_or(u32::MAX);
    head[0..4].copy_from_slice(&frame_len.to_le_bytes());
    head[8] = KIND_SKIP;
    let crc = skip_checksum(&head);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The trailer of a skip frame: its length, as every frame's.
pub(crate) fn encode_skip_trailer(frame_bytes: usize) -> [u8; TRAILER_BYTES] {
    u32::try_from(frame_bytes).unwrap_or(u32::MAX).to_le_bytes()
}

/// Parses and checks the frame at the start of `bytes`. `room_bytes` is how far the segment
/// extends from the frame's start.
pub(crate) fn decode_frame(
    bytes: &[u8],
    room_bytes: usize,
) -> Result<(Frame<'_>, usize), FrameError> {
    let frame_len = frame_length(bytes, room_bytes)?;
    let frame = &bytes[..frame_len];
    if read_u32(frame, frame_len - TRAILER_BYTES) as usize != frame_len {
        return Err(FrameError::Invalid(
            "its trailer does not repeat its length",
        ));
    }
    if read_u32(frame, 4) != frame_checksum(frame) {
        return Err(FrameError::Invalid("it fails its checksum"));
    }
    match frame[8] {
        KIND_PADDING => Ok((Frame::Padding, frame_len)),
        KIND_EVENT => decode_event(frame).map(|event| (Frame::Event(event), frame_len)),
        _ => Err(FrameError::Invalid("its kind byte is unknown")),
    }
}

fn decode_event(frame: &[u8]) -> Result<EventFrame<'_>, FrameError> {
    if frame.len() < EVENT_HEADER_BYTES + TRAILER_BYTES {
        return Err(FrameError::Invalid(
            "an event frame is shorter than its header",
        ));
    }
    let flags = frame[9];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(FrameError::Invalid("its flags are unknown"));
    }
    let marked = flags & FLAG_SYNC_MARK != 0;
    if marked && frame.len() < EVENT_HEADER_BYTES + SYNC_MARK_BYTES + TRAILER_BYTES {
        return Err(FrameError::Invalid(
            "an event frame is shorter than its header",
        ));
    }
    let stream_len = usize::from(u16::from_le_bytes([frame[10], frame[11]]));
    let type_len = usize::from(u16::from_le_bytes([frame[12], frame[13]]));
    let data_len = read_u32(frame, 48) as usize;
    let metadata_len = read_u32(frame, 52) as usize;
    let synced_end = marked.then(|| read_u64(frame, EVENT_HEADER_BYTES));
    let stream_start = EVENT_HEADER_BYTES + if marked { SYNC_MARK_BYTES } else { 0 };
    let type_start = stream_start + stream_len;
    let data_start = type_start + type_len;
    let metadata_start = data_start + data_len;
    let end = metadata_start + metadata_len;
    if end + TRAILER_BYTES > frame.len() {
        return Err(FrameError::Invalid("its field lengths overrun the frame"));
    }
    let stream = std::str::from_utf8(&frame[stream_start..type_start])
        .map_err(|_| FrameError::Invalid("its stream name is not UTF-8"))?;
    let event_type = std::str::from_utf8(&frame[type_start..data_start])
        .map_err(|_| FrameError::Invalid("its event type is not UTF-8"))?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&frame[24..40]);
    Ok(EventFrame {
        flags,
        stream,
        event_type,
        revision: read_u64(frame, 16),
        id: u128::from_be_bytes(id),
        created_nanos: i64::from_le_bytes(frame[40..48].try_into().unwrap_or([0; 8])),
        data_range: data_start..metadata_start,
        metadata_range: metadata_start..end,
        synced_end,
    })
}

/// The length recorded in the trailer of the frame that ends at `bytes.len()`.
pub(crate) fn trailer_length(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= TRAILER_BYTES).then(|| read_u32(bytes, bytes.len() - TRAILER_BYTES) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(data: &'a [u8], commit: bool) -> EventRecord<'a> {
        EventRecord {
            stream: "order-1",
            revision: 7,
            id: 0x1234,
            event_type: "OrderPlaced",
            json: true,
            created_nanos: 42,
            data,
            metadata: b"{}",
            commit,
        }
    }

    #[test]
    fn event_frame_roundtrips() {
        let mut buffer = Vec::new();
        let frame_len = encode_event(&mut buffer, &record(b"{\"a\":1}", true));
        assert_eq!(frame_len, buffer.len());
        assert_eq!(frame_len % 8, 0);
        let (frame, decoded_len) = decode_frame(&buffer, buffer.len()).unwrap();
        assert_eq!(decoded_len, frame_len);
        let Frame::Event(event) = frame else {
            panic!("not an event")
        };
        assert_eq!(event.stream, "order-1");
        assert_eq!(event.event_type, "OrderPlaced");
        assert_eq!(event.revision, 7);
        assert_eq!(event.id, 0x1234);
        assert!(event.is_commit());
        assert_eq!(&buffer[event.data_range.clone()], b"{\"a\":1}");
        assert_eq!(&buffer[event.metadata_range.clone()], b"{}");
        assert_eq!(trailer_length(&buffer), Some(frame_len));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buffer = Vec::new();
        encode_event(&mut buffer, &record(b"payload", false));
        for at in 0..buffer.len() {
            let mut damaged = buffer.clone();
            damaged[at] ^= 0x40;
            assert!(
                decode_frame(&damaged, damaged.len()).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn padding_frame_roundtrips() {
        let mut buffer = Vec::new();
        encode_padding(&mut buffer, 48);
        assert!(matches!(
            decode_frame(&buffer, 48),
            Ok((Frame::Padding, 48))
        ));
    }

    #[test]
    fn zero_length_is_empty_and_partial_is_incomplete() {
        assert_eq!(decode_frame(&[0u8; 16], 16).err(), Some(FrameError::Empty));
        let mut buffer = Vec::new();
        let frame_len = encode_event(&mut buffer, &record(b"x", true));
        assert_eq!(
            decode_frame(&buffer[..20], 4096).err(),
            Some(FrameError::Incomplete { needed: frame_len })
        );
    }

    #[test]
    fn segment_header_checks() {
        let header = encode_segment_header(3, 1 << 20);
        assert_eq!(
            check_segment_header(&header, 3, 1 << 20),
            Ok(FORMAT_VERSION)
        );
        assert!(check_segment_header(&header, 4, 1 << 20).is_err());
        assert!(check_segment_header(&header, 3, 1 << 21).is_err());
    }

    #[test]
    fn version_1_segments_are_still_read() {
        let mut header = encode_segment_header(0, 1 << 20);
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[0..60]);
        header[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&header, 0, 1 << 20), Ok(1));
        // 3: rewritten by a scavenge.
        header[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[0..60]);
        header[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&header, 0, 1 << 20), Ok(3));
        header[8..12].copy_from_slice(&4u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[0..60]);
        header[60..64].copy_from_slice(&crc.to_le_bytes());
        assert!(check_segment_header(&header, 0, 1 << 20).is_err());
    }

    #[test]
    fn a_skip_frame_is_known_by_its_head_alone_and_checked() {
        let mut run = vec![0u8; 4096];
        run[..SKIP_HEAD_BYTES].copy_from_slice(&encode_skip_head(4096));
        run[4092..].copy_from_slice(&encode_skip_trailer(4096));
        assert_eq!(frame_length(&run, 8192), Err(FrameError::Skip(4096)));
        // The head is enough: the hole behind it is never read.
        assert_eq!(
            frame_length(&run[..SKIP_HEAD_BYTES], 8192),
            Err(FrameError::Skip(4096))
        );
        assert!(matches!(
            decode_frame(&run, 8192),
            Err(FrameError::Skip(4096))
        ));
        assert_eq!(trailer_length(&run), Some(4096));
        assert!(matches!(
            frame_length(&run, 4000),
            Err(FrameError::Invalid(_))
        ));
        let mut damaged = run.clone();
        damaged[0] = 0xf8;
        assert!(matches!(
            frame_length(&damaged, 8192),
            Err(FrameError::Invalid(_))
        ));
        let mut flagged = run;
        flagged[9] = 1;
        assert!(matches!(
            frame_length(&flagged, 8192),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn a_sync_mark_roundtrips_and_leaves_the_fields_intact() {
        let mut buffer = Vec::new();
        let frame_len = encode_event_marked(&mut buffer, &record(b"{}", true), Some(4096));
        assert_eq!(frame_len, record(b"{}", true).frame_bytes_marked(true));
        assert_eq!(frame_len, buffer.len());
        let Ok((Frame::Event(event), _)) = decode_frame(&buffer, buffer.len()) else {
            panic!("not an event")
        };
        assert_eq!(event.synced_end, Some(4096));
        assert_eq!(event.stream, "order-1");
        assert_eq!(event.event_type, "OrderPlaced");
        assert_eq!(&buffer[event.data_range.clone()], b"{}");
        let mut unmarked = Vec::new();
        encode_event(&mut unmarked, &record(b"{}", true));
        let Ok((Frame::Event(event), _)) = decode_frame(&unmarked, unmarked.len()) else {
            panic!("not an event")
        };
        assert_eq!(event.synced_end, None);
    }

    #[test]
    fn unknown_flags_make_a_frame_invalid() {
        let mut buffer = Vec::new();
        encode_event(&mut buffer, &record(b"x", true));
        buffer[9] |= 0x80;
        let crc = frame_checksum(&buffer);
        buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_frame(&buffer, buffer.len()),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn a_recorded_segment_size_is_checked_before_use() {
        let header = encode_segment_header(0, 1 << 20);
        assert_eq!(recorded_segment_size(&header), Ok(1 << 20));
        for size in [0, 8, (1 << 20) + 4, 1 << 40] {
            let header = encode_segment_header(0, size);
            assert!(recorded_segment_size(&header).is_err(), "size {size}");
        }
        let mut damaged = encode_segment_header(0, 1 << 20);
        damaged[24] ^= 1;
        assert!(recorded_segment_size(&damaged).is_err());
    }

    #[test]
    fn a_remembering_name_cache_shares_a_name_met_again_after_others() {
        let mut names = StreamNameCache::remembering();
        let first = names.get("a-1");
        names.get("b-2");
        names.get("c-3");
        let again = names.get("a-1");
        assert_eq!(again, first);
        assert_eq!(again.as_str().as_ptr(), first.as_str().as_ptr());
        let mut last_only = StreamNameCache::default();
        let first = last_only.get("a-1");
        last_only.get("b-2");
        let again = last_only.get("a-1");
        assert_eq!(again, first);
        assert_ne!(again.as_str().as_ptr(), first.as_str().as_ptr());
    }
}
