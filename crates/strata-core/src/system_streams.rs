//! The streams KurrentDB's standard projections write — `$ce-<category>`, `$et-<type>`,
//! `$streams`, `$category-<category>`, `$bc-<correlation id>` — served from secondary
//! indexes instead: nothing is written for them, and a read returns the link events a
//! KurrentDB client would find there, numbered densely from 0 in log order.
//!
//! Backends keep the indexes ([`index_keys`] says which keys an event goes under) and answer
//! [`crate::EventStore::read_index`]; [`read_system_stream`] turns an index read into the
//! stream's link events, and [`resolve_link`] turns a link into the event it points at.

use std::ops::Range;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::{EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice};
use crate::types::{
    ContentType, Direction, EventId, RecordedEvent, Revision, StreamName, StreamState,
};

/// Type of a link event: its data is `<revision>@<stream>`.
pub const LINK_EVENT_TYPE: &str = "$>";
/// Type of a stream reference in `$category-<category>`: its data is the stream name.
pub const STREAM_REFERENCE_EVENT_TYPE: &str = "$@";

const CATEGORY_PREFIX: &str = "$ce-";
const EVENT_TYPE_PREFIX: &str = "$et-";
const CORRELATION_PREFIX: &str = "$bc-";
const CATEGORY_STREAMS_PREFIX: &str = "$category-";
const STREAMS_STREAM: &str = "$streams";
/// KurrentDB 25.1's secondary indexes, read as `$all` with a stream-prefix filter.
const INDEX_FILTER_CATEGORY_PREFIX: &str = "$idx-ce-";
const INDEX_FILTER_EVENT_TYPE_PREFIX: &str = "$idx-et-";
/// The metadata key `$by_correlation_id` indexes by.
const CORRELATION_ID_KEY: &str = "$correlationId";

/// One secondary index: the events under one key, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    /// Events of the streams of a category (`$ce-<category>`).
    Category(String),
    /// Events of one type (`$et-<type>`).
    EventType(String),
    /// Events whose JSON metadata carries `$correlationId` (`$bc-<id>`).
    Correlation(String),
    /// The first event of every stream (`$streams`).
    StreamStarts,
    /// The first event of every stream of a category (`$category-<category>`).
    CategoryStreams(String),
    /// Events of user streams carrying a tag (`$tags` of their metadata, docs/DCB.md).
    /// No system stream reads it.
    Tag(String),
}

impl IndexKey {
    /// The index a system stream is served from, if `stream` is one.
    pub fn of_stream(stream: &str) -> Option<IndexKey> {
        let non_empty = |rest: &str| (!rest.is_empty()).then(|| rest.to_owned());
        if stream == STREAMS_STREAM {
            Some(IndexKey::StreamStarts)
        } else if let Some(rest) = stream.strip_prefix(CATEGORY_PREFIX) {
            non_empty(rest).map(IndexKey::Category)
        } else if let Some(rest) = stream.strip_prefix(EVENT_TYPE_PREFIX) {
            non_empty(rest).map(IndexKey::EventType)
        } else if let Some(rest) = stream.strip_prefix(CORRELATION_PREFIX) {
            non_empty(rest).map(IndexKey::Correlation)
        } else if let Some(rest) = stream.strip_prefix(CATEGORY_STREAMS_PREFIX) {
            non_empty(rest).map(IndexKey::CategoryStreams)
        } else {
            None
        }
    }

    /// The index a `$all` stream-prefix filter names (`$idx-ce-<category>`,
    /// `$idx-et-<type>`), if it names one.
    pub fn of_index_filter(prefix: &str) -> Option<IndexKey> {
        if let Some(category) = prefix.strip_prefix(INDEX_FILTER_CATEGORY_PREFIX) {
            (!category.is_empty()).then(|| IndexKey::Category(category.to_owned()))
        } else if let Some(event_type) = prefix.strip_prefix(INDEX_FILTER_EVENT_TYPE_PREFIX) {
            (!event_type.is_empty()).then(|| IndexKey::EventType(event_type.to_owned()))
        } else {
            None
        }
    }

    /// The system stream that shows this index.
    pub fn stream_name(&self) -> String {
        match self {
            IndexKey::Category(category) => format!("{CATEGORY_PREFIX}{category}"),
            IndexKey::EventType(event_type) => format!("{EVENT_TYPE_PREFIX}{event_type}"),
            IndexKey::Correlation(id) => format!("{CORRELATION_PREFIX}{id}"),
            IndexKey::StreamStarts => STREAMS_STREAM.to_owned(),
            IndexKey::CategoryStreams(category) => format!("{CATEGORY_STREAMS_PREFIX}{category}"),
            // Named for messages only: no system stream shows a tag's index.
            IndexKey::Tag(tag) => format!("$tag-{tag}"),
        }
    }

    /// True when the stream shows stream references (`$@`) rather than links (`$>`).
    pub fn shows_stream_references(&self) -> bool {
        matches!(self, IndexKey::CategoryStreams(_))
    }
}

/// True when `stream` is served from an index: appends to it are refused.
pub fn is_system_stream_from_index(stream: &str) -> bool {
    IndexKey::of_stream(stream).is_some()
}

/// The category of a stream as KurrentDB's `$by_category` sees it (`first` mode, separator
/// `-`): the part before the first `-`. System streams, names without a `-`, and names
/// starting with one have none.
pub fn category_of(stream: &str) -> Option<&str> {
    if stream.starts_with('$') {
        return None;
    }
    match stream.find('-') {
        Some(at) if at > 0 => Some(&stream[..at]),
        _ => None,
    }
}

/// The keys an event is indexed under, as the standard projections would link it:
/// - events of system streams are indexed under none, except the metadata streams `$$S` of
///   user streams (their events go to `$et-$metadata` and their first to `$streams`);
/// - link events (`$>`) of user streams go to their category and to `$streams` /
///   `$category-…` (a category's link to a link points where that link points), never to
///   `$et-…` or `$bc-…`;
/// - `$bc-<id>` takes events whose JSON metadata has a string `$correlationId`.
///
/// Not modelled: the `$deleted` markers KurrentDB's projections add to `$ce-…` and
/// `$et-$deleted` when a stream is deleted (docs/INDEXES.md).
pub fn index_keys(stream: &str, revision: u64, event_type: &str, metadata: &[u8]) -> Vec<IndexKey> {
    let mut keys = Vec::new();
    // A tombstone's record is no event: its `$deleted` marker links are not modelled.
    if revision == crate::metadata::TOMBSTONE_REVISION {
        return keys;
    }
    let is_link = event_type == LINK_EVENT_TYPE;
    if stream.starts_with('$') {
        let user_metadata_stream = stream
            .strip_prefix("$$")
            .is_some_and(|described| !described.is_empty() && !described.starts_with('$'));
        if user_metadata_stream && !is_link {
            keys.push(IndexKey::EventType(event_type.to_owned()));
            if revision == 0 {
                keys.push(IndexKey::StreamStarts);
            }
        }
        return keys;
    }
    let category = category_of(stream);
    if let Some(category) = category {
        keys.push(IndexKey::Category(category.to_owned()));
    }
    if !is_link {
        keys.push(IndexKey::EventType(event_type.to_owned()));
        if let Some(id) = correlation_id(metadata) {
            keys.push(IndexKey::Correlation(id));
        }
        keys.extend(crate::dcb::tags_of(metadata).into_iter().map(IndexKey::Tag));
    }
    if revision == 0 {
        keys.push(IndexKey::StreamStarts);
        if let Some(category) = category {
            keys.push(IndexKey::CategoryStreams(category.to_owned()));
        }
    }
    keys
}

/// `$correlationId` of an event's JSON metadata, when it is a non-empty string.
pub fn correlation_id(metadata: &[u8]) -> Option<String> {
    // Most metadata has no correlation id: skip the parse when the key cannot be there.
    if !metadata
        .windows(CORRELATION_ID_KEY.len())
        .any(|window| window == CORRELATION_ID_KEY.as_bytes())
    {
        return None;
    }
    match crate::metadata_key::metadata_value(metadata, CORRELATION_ID_KEY)? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// An event under an index, with its revision there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedEvent {
    pub index_revision: u64,
    pub event: RecordedEvent,
}

/// What an index read finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSlice {
    /// Events in the requested order.
    pub events: Vec<IndexedEvent>,
    /// Revision of the index's last event; `None` when the index is empty.
    pub last_revision: Option<u64>,
}

impl IndexSlice {
    /// The slice of an index of `len` events whose revisions `window` hold `events`
    /// (ascending, as [`index_window`] gives them), in `direction`'s order.
    pub fn of_window(
        events: Vec<RecordedEvent>,
        window: Range<u64>,
        len: u64,
        direction: Direction,
    ) -> Self {
        let mut events: Vec<IndexedEvent> = events
            .into_iter()
            .zip(window)
            .map(|(event, index_revision)| IndexedEvent {
                index_revision,
                event,
            })
            .collect();
        if direction == Direction::Backwards {
            events.reverse();
        }
        IndexSlice {
            events,
            last_revision: len.checked_sub(1),
        }
    }
}

/// The index revisions a read with `options` covers in an index of `len` events, in
/// ascending order (a backwards read returns them reversed).
pub fn index_window(options: &ReadStreamOptions, len: u64) -> Range<u64> {
    let Some(last) = len.checked_sub(1) else {
        return 0..0;
    };
    let count = u64::try_from(options.max_count).unwrap_or(u64::MAX);
    match options.direction {
        Direction::Forwards => {
            let from = match options.from {
                ReadFrom::Start => 0,
                ReadFrom::End => len,
                ReadFrom::At(revision) => revision.0.min(len),
            };
            from..from.saturating_add(count).min(len)
        }
        Direction::Backwards => {
            let from = match options.from {
                ReadFrom::Start => 0,
                ReadFrom::End => last,
                ReadFrom::At(revision) if revision.0 > last => last,
                ReadFrom::At(revision) => revision.0,
            };
            let end = from + 1;
            end.saturating_sub(count)..end
        }
    }
}

/// [`EventStore::read_index`] for a store that keeps no indexes: scans `$all` from the
/// start and keeps the events under `key`. Its cost grows with the log; backends override it.
///
/// # Errors
/// Storage errors from the scan.
pub async fn read_index_by_scanning<S: EventStore + ?Sized>(
    store: &S,
    key: &IndexKey,
    options: ReadStreamOptions,
) -> Result<IndexSlice> {
    let mut matching = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let mut page_options = ReadAllOptions::forwards().max_count(4_096);
        page_options.from = from;
        let page = store.read_all(page_options).await?;
        for event in page.events {
            let keys = index_keys(
                event.stream.as_str(),
                event.revision.0,
                &event.event_type,
                &event.metadata,
            );
            if keys.contains(key) {
                matching.push(event);
            }
        }
        if page.is_end {
            break;
        }
        from = ReadFrom::At(page.next_position);
    }
    let len = matching.len() as u64;
    let window = index_window(&options, len);
    let in_window: Vec<RecordedEvent> = matching
        .into_iter()
        .skip(usize::try_from(window.start).unwrap_or(usize::MAX))
        .take(usize::try_from(window.end - window.start).unwrap_or(usize::MAX))
        .collect();
    Ok(IndexSlice::of_window(
        in_window,
        window,
        len,
        options.direction,
    ))
}

/// Reads the system stream `stream` (served from `key`) as a KurrentDB client would find
/// it: link events (`$>`, data `<revision>@<stream>`) or stream references (`$@`).
///
/// # Errors
/// Storage errors from the index read.
pub async fn read_system_stream<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    key: &IndexKey,
    options: ReadStreamOptions,
) -> Result<StreamSlice> {
    let slice = store.read_index(key, options).await?;
    let Some(last_revision) = slice.last_revision else {
        return Ok(StreamSlice::NotFound);
    };
    let events = slice
        .events
        .into_iter()
        .map(|indexed| {
            if key.shows_stream_references() {
                stream_reference(stream, indexed.index_revision, &indexed.event)
            } else {
                link_event(stream, indexed.index_revision, &indexed.event)
            }
        })
        .collect();
    Ok(StreamSlice::Found {
        events,
        last_revision: Revision(last_revision),
    })
}

/// The link at `revision` of `stream` to `target`, as the standard projections write it:
/// data `<revision>@<stream>` (a link to a link points where that link points), metadata
/// with the target's position (`$c`, `$p`), id (`$causedBy`), original stream (`$o`, in
/// `$ce-…`) and `$correlationId`. It shares the target's position and creation time; its
/// id is derived from the target's and the stream's, so it is the same on every read.
pub fn link_event(stream: &StreamName, revision: u64, target: &RecordedEvent) -> RecordedEvent {
    let data = if target.event_type == LINK_EVENT_TYPE {
        target.data.clone()
    } else {
        link_data(target)
    };
    let metadata = link_metadata(stream.as_str().starts_with(CATEGORY_PREFIX), target);
    RecordedEvent {
        stream: stream.clone(),
        revision: Revision(revision),
        position: target.position,
        id: derived_id(stream, target),
        event_type: LINK_EVENT_TYPE.to_owned(),
        content_type: ContentType::Binary,
        data,
        metadata,
        created: target.created,
    }
}

/// `<revision>@<stream>` of a link to `target`, in a buffer of its exact length (a `Bytes`
/// made from a `Vec` with spare room allocates again).
fn link_data(target: &RecordedEvent) -> Bytes {
    let mut digits = itoa::Buffer::new();
    let revision = digits.format(target.revision.0).as_bytes();
    let stream = target.stream.as_str().as_bytes();
    let mut out = Vec::with_capacity(revision.len() + 1 + stream.len());
    out.extend_from_slice(revision);
    out.push(b'@');
    out.extend_from_slice(stream);
    Bytes::from(out)
}

/// A link's metadata, `{"$c":…,"$p":…,"$o":…,"$causedBy":…,"$correlationId":…}`, written
/// directly: links are made on every index read, and a JSON map per link was most of its
/// cost. The buffer is sized exactly unless a string needs escaping.
fn link_metadata(with_origin: bool, target: &RecordedEvent) -> Bytes {
    const POSITION_C: &[u8] = b"{\"$c\":";
    const POSITION_P: &[u8] = b",\"$p\":";
    const ORIGIN: &[u8] = b",\"$o\":";
    const CAUSED_BY: &[u8] = b",\"$causedBy\":\"";
    const CORRELATION: &[u8] = b",\"$correlationId\":";
    let mut digits = itoa::Buffer::new();
    let position = digits.format(target.position.0).as_bytes();
    let mut id_text = uuid::Uuid::encode_buffer();
    let id = target
        .id
        .0
        .hyphenated()
        .encode_lower(&mut id_text)
        .as_bytes();
    let origin = with_origin.then(|| target.stream.as_str());
    let correlation = (target.content_type == ContentType::Json)
        .then(|| correlation_id(&target.metadata))
        .flatten();
    let len = POSITION_C.len()
        + POSITION_P.len()
        + 2 * position.len()
        + origin.map_or(0, |origin| ORIGIN.len() + origin.len() + 2)
        + CAUSED_BY.len()
        + id.len()
        + 1
        + correlation
            .as_ref()
            .map_or(0, |correlation| CORRELATION.len() + correlation.len() + 2)
        + 1;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(POSITION_C);
    out.extend_from_slice(position);
    out.extend_from_slice(POSITION_P);
    out.extend_from_slice(position);
    if let Some(origin) = origin {
        out.extend_from_slice(ORIGIN);
        push_json_string(&mut out, origin);
    }
    out.extend_from_slice(CAUSED_BY);
    out.extend_from_slice(id);
    out.push(b'"');
    if let Some(correlation) = correlation {
        out.extend_from_slice(CORRELATION);
        push_json_string(&mut out, &correlation);
    }
    out.push(b'}');
    Bytes::from(out.into_boxed_slice())
}

/// `text` as a JSON string: quoted as it is unless it holds a character JSON escapes.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        serde_json::to_writer(&mut *out, text).expect("writes to a Vec");
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

fn stream_reference(stream: &StreamName, revision: u64, first: &RecordedEvent) -> RecordedEvent {
    RecordedEvent {
        event_type: STREAM_REFERENCE_EVENT_TYPE.to_owned(),
        data: Bytes::from(first.stream.as_str().to_owned()),
        ..link_event(stream, revision, first)
    }
}

/// The UUID v5 (RFC 9562) of the target's id and the stream's name in
/// [`LINK_ID_NAMESPACE`]. Hashed with `sha1`, which uses the CPU's SHA instructions where
/// it has them (`uuid`'s own SHA-1 does not): one hash per link read.
fn derived_id(stream: &StreamName, target: &RecordedEvent) -> EventId {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(LINK_ID_NAMESPACE.as_bytes());
    hasher.update(target.id.as_u128().to_le_bytes());
    hasher.update(stream.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    EventId(uuid::Builder::from_sha1_bytes(bytes).into_uuid())
}

/// Part of what clients see: changing it changes the ids of every link.
const LINK_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x3f1d_8a62_0c57_4e9b_a4d3_71e6_5b20_c9f8);

/// An event as a read with `resolve_links` returns it: the event a link points at, with the
/// link; or an event that is no link, alone; or a link whose target is gone, alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedEvent {
    /// The event a link points at, or the event itself when it is no link. `None` for a
    /// link whose target no longer exists (deleted, truncated, expired or never there).
    pub event: Option<RecordedEvent>,
    /// The link, when `event` came through one.
    pub link: Option<RecordedEvent>,
}

impl ResolvedEvent {
    /// An event read without resolving.
    pub fn plain(event: RecordedEvent) -> Self {
        Self {
            event: Some(event),
            link: None,
        }
    }

    /// The event that was read: the link when there is one, else the event.
    pub fn original(&self) -> &RecordedEvent {
        match (&self.link, &self.event) {
            (Some(link), _) => link,
            (None, Some(event)) => event,
            (None, None) => unreachable!("a resolved event holds an event or a link"),
        }
    }
}

/// The state of `stream` as its readers see it: [`EventStore::stream_state`], except for a
/// stream served from an index, which backends do not store: its last link.
///
/// # Errors
/// Storage errors.
pub async fn stream_state<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
) -> Result<StreamState> {
    if !is_system_stream_from_index(stream.as_str()) {
        return store.stream_state(stream).await;
    }
    let last = ReadStreamOptions::backwards().max_count(1);
    Ok(match store.read_stream(stream, last).await? {
        StreamSlice::Found { last_revision, .. } => StreamState::At(last_revision),
        StreamSlice::NotFound => StreamState::NoStream,
    })
}

/// `<revision>@<stream>` of a link's data.
pub fn parse_link(data: &[u8]) -> Option<(u64, StreamName)> {
    let text = std::str::from_utf8(data).ok()?;
    let (revision, stream) = text.split_once('@')?;
    let revision = revision.parse().ok()?;
    let stream = StreamName::new(stream).ok()?;
    Some((revision, stream))
}

/// Resolves `event` when it is a link (`$>`): the event it points at, if that is still
/// visible in its stream; any other event comes back as it is.
///
/// As KurrentDB: a link whose data does not start with a number (before any `@`) is no
/// link and comes back as it is; a link to an event that is gone (its stream deleted,
/// tombstoned or truncated, or never there), or with no valid stream after the `@`, comes
/// back with the link alone. So does a link to a stream the caller may not read, where
/// KurrentDB would resolve it regardless.
///
/// # Errors
/// Storage errors.
pub async fn resolve_link<S: EventStore + ?Sized>(
    store: &S,
    event: RecordedEvent,
) -> Result<ResolvedEvent> {
    if event.event_type != LINK_EVENT_TYPE || !names_a_revision(&event.data) {
        return Ok(ResolvedEvent::plain(event));
    }
    let target = match parse_link(&event.data) {
        Some((revision, stream)) => read_target(store, &stream, revision).await?,
        None => None,
    };
    Ok(ResolvedEvent {
        event: target,
        link: Some(event),
    })
}

/// What a stream read with its links resolved finds ([`EventStore::read_stream_resolved`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedSlice {
    /// The stream has no events, or was soft-deleted.
    NotFound,
    /// The events in the requested order, links resolved, and the stream's last revision.
    Found {
        events: Vec<ResolvedEvent>,
        last_revision: Revision,
    },
}

/// [`EventStore::read_stream`], then [`resolve_links`] on what it found: the default of
/// [`EventStore::read_stream_resolved`], and what every backend's answer must equal.
///
/// # Errors
/// As [`EventStore::read_stream`] and [`resolve_links`].
pub async fn read_stream_resolved_by_reading<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    options: ReadStreamOptions,
) -> Result<ResolvedSlice> {
    match store.read_stream(stream, options).await? {
        StreamSlice::NotFound => Ok(ResolvedSlice::NotFound),
        StreamSlice::Found {
            events,
            last_revision,
        } => Ok(ResolvedSlice::Found {
            events: resolve_links(store, events).await?,
            last_revision,
        }),
    }
}

/// Resolves every link of `events`, in order, as [`resolve_link`] does one by one.
///
/// Consecutive links to consecutive revisions of one stream (a category read meets its
/// streams' events in such runs) are resolved by one read of that range instead of one
/// read each.
///
/// # Errors
/// As [`resolve_link`].
pub async fn resolve_links<S: EventStore + ?Sized>(
    store: &S,
    events: Vec<RecordedEvent>,
) -> Result<Vec<ResolvedEvent>> {
    let mut resolved = Vec::with_capacity(events.len());
    let mut events = events.into_iter().peekable();
    while let Some(event) = events.next() {
        let Some((first, stream)) = link_target(&event) else {
            resolved.push(resolve_link(store, event).await?);
            continue;
        };
        let mut run = vec![(first, event)];
        let mut step = None;
        while run.len() < LINK_RUN_MAX
            && let Some(next) = events.peek()
            && let Some((revision, next_stream)) = link_target(next)
            && next_stream == stream
        {
            let last = run[run.len() - 1].0;
            let follows = match step {
                None => revision == last + 1 || revision + 1 == last,
                Some(true) => revision == last + 1,
                Some(false) => revision + 1 == last,
            };
            if !follows {
                break;
            }
            step = Some(revision > last);
            let next = events.next().expect("peeked");
            run.push((revision, next));
        }
        resolve_run(store, &stream, run, &mut resolved).await?;
    }
    Ok(resolved)
}

/// Links resolved by one read at most.
const LINK_RUN_MAX: usize = 512;

/// The revision and stream a link names, when `event` is a link that resolves by them.
fn link_target(event: &RecordedEvent) -> Option<(u64, StreamName)> {
    if event.event_type != LINK_EVENT_TYPE || !names_a_revision(&event.data) {
        return None;
    }
    parse_link(&event.data)
}

/// Resolves `run`, links to consecutive revisions of `stream`, with one read of their
/// range; a target that read did not return is looked up alone, as [`resolve_link`] would.
async fn resolve_run<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    run: Vec<(u64, RecordedEvent)>,
    resolved: &mut Vec<ResolvedEvent>,
) -> Result<()> {
    if run.len() == 1 {
        let (revision, link) = run.into_iter().next().expect("one link");
        let event = read_target(store, stream, revision).await?;
        resolved.push(ResolvedEvent {
            event,
            link: Some(link),
        });
        return Ok(());
    }
    let low = run
        .iter()
        .map(|(revision, _)| *revision)
        .min()
        .expect("links");
    let options = ReadStreamOptions::forwards()
        .from_revision(low)
        .max_count(run.len());
    let found = match store.read_stream(stream, options).await {
        Ok(slice) => slice.into_events(),
        Err(Error::StreamDeleted { .. } | Error::AccessDenied { .. }) => {
            resolved.extend(run.into_iter().map(|(_, link)| ResolvedEvent {
                event: None,
                link: Some(link),
            }));
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    // The run's revisions are consecutive: slot `i` holds revision `low + i`.
    let mut slots: Vec<Option<RecordedEvent>> = (0..run.len()).map(|_| None).collect();
    for event in found {
        let slot = event
            .revision
            .0
            .checked_sub(low)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| slots.get_mut(at));
        if let Some(slot) = slot {
            *slot = Some(event);
        }
    }
    for (revision, link) in run {
        let slot = usize::try_from(revision - low).expect("within the run");
        let event = match slots[slot].take() {
            Some(event) => Some(event),
            None => read_target(store, stream, revision).await?,
        };
        resolved.push(ResolvedEvent {
            event,
            link: Some(link),
        });
    }
    Ok(())
}

async fn read_target<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    revision: u64,
) -> Result<Option<RecordedEvent>> {
    let options = ReadStreamOptions::forwards()
        .from_revision(revision)
        .max_count(1);
    match store.read_stream(stream, options).await {
        Ok(slice) => Ok(slice
            .into_events()
            .into_iter()
            .find(|event| event.revision.0 == revision)),
        Err(Error::StreamDeleted { .. } | Error::AccessDenied { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// True when a link's data starts with a number, as KurrentDB tests before resolving.
fn names_a_revision(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| {
        let number = text.split('@').next().unwrap_or_default();
        number.trim().parse::<i64>().is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_stream_names_map_to_their_indexes() {
        let cases = [
            ("$ce-order", Some(IndexKey::Category("order".into()))),
            ("$et-Placed", Some(IndexKey::EventType("Placed".into()))),
            ("$bc-abc", Some(IndexKey::Correlation("abc".into()))),
            ("$streams", Some(IndexKey::StreamStarts)),
            (
                "$category-order",
                Some(IndexKey::CategoryStreams("order".into())),
            ),
            ("$ce-", None),
            ("$et-", None),
            ("order-1", None),
            ("$$$ce-order", None),
            ("$users", None),
        ];
        for (stream, key) in cases {
            assert_eq!(IndexKey::of_stream(stream), key, "{stream}");
            if let Some(key) = key {
                assert_eq!(key.stream_name(), stream);
            }
        }
        assert_eq!(
            IndexKey::of_index_filter("$idx-ce-order"),
            Some(IndexKey::Category("order".into()))
        );
        assert_eq!(
            IndexKey::of_index_filter("$idx-et-Placed"),
            Some(IndexKey::EventType("Placed".into()))
        );
        assert_eq!(IndexKey::of_index_filter("$idx-user-x"), None);
        assert_eq!(IndexKey::of_index_filter("order"), None);
    }

    #[test]
    fn categories_follow_by_category_first_mode() {
        assert_eq!(category_of("order-1"), Some("order"));
        assert_eq!(category_of("order-1-2"), Some("order"));
        assert_eq!(category_of("order"), None);
        assert_eq!(category_of("-order"), None);
        assert_eq!(category_of("$users-1"), None);
    }

    #[test]
    fn events_are_indexed_under_category_type_correlation_and_stream_starts() {
        let keys = index_keys("order-1", 0, "Placed", br#"{"$correlationId":"c-1"}"#);
        assert_eq!(
            keys,
            vec![
                IndexKey::Category("order".into()),
                IndexKey::EventType("Placed".into()),
                IndexKey::Correlation("c-1".into()),
                IndexKey::StreamStarts,
                IndexKey::CategoryStreams("order".into()),
            ]
        );
        assert_eq!(
            index_keys("single", 3, "Placed", b"{}"),
            vec![IndexKey::EventType("Placed".into())]
        );
        assert_eq!(
            index_keys("$$order-1", 0, "$metadata", b""),
            vec![
                IndexKey::EventType("$metadata".into()),
                IndexKey::StreamStarts
            ]
        );
        assert!(index_keys("$$$users", 0, "$metadata", b"").is_empty());
        assert!(index_keys("$users", 0, "$User", b"").is_empty());
        assert_eq!(
            index_keys("order-1", 1, LINK_EVENT_TYPE, br#"{"$correlationId":"c"}"#),
            vec![IndexKey::Category("order".into())],
            "a link goes to its category only"
        );
        assert_eq!(
            index_keys("order-1", 2, "Placed", br#"{"$correlationId":7}"#).len(),
            2,
            "a correlation id that is no string is not indexed"
        );
    }

    #[test]
    fn index_windows_follow_stream_read_rules() {
        let forwards = ReadStreamOptions::forwards();
        let backwards = ReadStreamOptions::backwards();
        assert_eq!(index_window(&forwards, 0), 0..0);
        assert_eq!(index_window(&forwards, 5), 0..5);
        assert_eq!(
            index_window(&forwards.from_revision(3).max_count(10), 5),
            3..5
        );
        assert_eq!(index_window(&forwards.from_revision(9), 5), 5..5);
        assert_eq!(index_window(&backwards, 5), 0..5);
        assert_eq!(index_window(&backwards.max_count(2), 5), 3..5);
        assert_eq!(
            index_window(&backwards.from_revision(1).max_count(5), 5),
            0..2
        );
        assert_eq!(
            index_window(&backwards.from_revision(40).max_count(1), 5),
            4..5
        );
    }

    fn target_event(
        stream: &str,
        position: u64,
        id: u128,
        content_type: ContentType,
        metadata: &[u8],
    ) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new(stream).unwrap(),
            revision: Revision(position / 3),
            position: crate::types::Position(position),
            id: EventId::from_u128(id),
            event_type: "Placed".to_owned(),
            content_type,
            data: Bytes::from_static(b"{}"),
            metadata: Bytes::copy_from_slice(metadata),
            created: crate::types::Timestamp(0),
        }
    }

    /// The link a projection writes, built with `format!` and `serde_json` as links were
    /// before they were written by hand.
    fn link_by_formatting(stream: &str, target: &RecordedEvent) -> (String, String) {
        let mut metadata = format!("{{\"$c\":{0},\"$p\":{0}", target.position.0);
        if stream.starts_with(CATEGORY_PREFIX) {
            metadata += &format!(",\"$o\":{}", serde_json::json!(target.stream.as_str()));
        }
        metadata += &format!(",\"$causedBy\":\"{}\"", target.id);
        if target.content_type == ContentType::Json
            && let Some(id) = correlation_id(&target.metadata)
        {
            metadata += &format!(",\"$correlationId\":{}", serde_json::json!(id));
        }
        metadata.push('}');
        (format!("{}@{}", target.revision, target.stream), metadata)
    }

    #[test]
    fn links_are_written_as_formatting_would_write_them() {
        let cases: [(&str, &str, ContentType, &[u8], u64); 5] = [
            ("order-1", "$ce-order", ContentType::Json, b"{}", 0),
            ("order-1", "$et-Placed", ContentType::Json, b"", 4_096),
            (
                "we\"ird\\-\u{1}\u{e9}",
                "$ce-we\"ird\\",
                ContentType::Json,
                br#"{"$correlationId":"c-\"1\u0002"}"#,
                u64::MAX,
            ),
            (
                "order-2",
                "$bc-c",
                ContentType::Json,
                br#"{"$correlationId":"c"}"#,
                7,
            ),
            (
                "order-3",
                "$ce-order",
                ContentType::Binary,
                br#"{"$correlationId":"c"}"#,
                12_345_678_901,
            ),
        ];
        for (target_stream, stream, content_type, metadata, position) in cases {
            let id = 0x0123_4567_89ab_cdef_0f1e_2d3c_4b5a_6978 ^ u128::from(position);
            let target = target_event(target_stream, position, id, content_type, metadata);
            let stream = StreamName::new(stream).unwrap();
            let link = link_event(&stream, 3, &target);
            let (data, metadata) = link_by_formatting(stream.as_str(), &target);
            assert_eq!(link.data, data.as_bytes(), "{target_stream}");
            assert_eq!(link.metadata, metadata.as_bytes(), "{target_stream}");
            serde_json::from_slice::<serde_json::Value>(&link.metadata).expect("JSON");
        }
    }

    #[test]
    fn link_ids_are_uuid_v5_of_target_id_and_stream() {
        for (id, stream) in [
            (0_u128, "$ce-order"),
            (u128::MAX, "$et-Placed"),
            (0x0123_4567_89ab_cdef_0f1e_2d3c_4b5a_6978, "$streams"),
            (7, &*"$bc-".repeat(40)),
        ] {
            let target = target_event("order-1", 0, id, ContentType::Json, b"");
            let stream = StreamName::new(stream).unwrap();
            let mut name = id.to_le_bytes().to_vec();
            name.extend_from_slice(stream.as_str().as_bytes());
            assert_eq!(
                derived_id(&stream, &target).0,
                uuid::Uuid::new_v5(&LINK_ID_NAMESPACE, &name)
            );
        }
    }

    #[test]
    fn links_parse_back_to_their_target() {
        assert_eq!(
            parse_link(b"12@order-1"),
            Some((12, StreamName::new("order-1").unwrap()))
        );
        assert_eq!(
            parse_link(b"0@a@b"),
            Some((0, StreamName::new("a@b").unwrap()))
        );
        assert_eq!(parse_link(b"x@order-1"), None);
        assert_eq!(parse_link(b"12"), None);
        assert_eq!(parse_link(b"12@"), None);
        assert!(names_a_revision(b"12@order-1"));
        assert!(names_a_revision(b"12"), "a link that cannot resolve");
        assert!(names_a_revision(b"-1@order-1"));
        assert!(!names_a_revision(b"abc"), "no link: returned as it is");
        assert!(!names_a_revision(b"x@order-1"));
    }
}
