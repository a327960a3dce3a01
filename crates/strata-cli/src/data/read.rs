//! `strata read`: reads a stream, or the global log `$all` with an optional filter.

use clap::Args;
use strata_core::{
    Error, EventFilter, FilterTarget, Position, ReadAllOptions, ReadStreamOptions, RecordedEvent,
    StreamSlice,
};

use super::event_output::{event_json, print_events};
use super::output::Lines;
use super::{Create, OpenStore, StoreArgs, explain, stream_name, usage_bail};

/// Events asked of the store per page of `$all`.
const ALL_PAGE_EVENTS_MAX: usize = 4_096;

#[derive(Args)]
pub(crate) struct ReadArgs {
    /// Stream to read, or `$all` for the global log.
    stream: String,
    /// Read from the end towards the start.
    #[arg(long)]
    backwards: bool,
    /// First revision to read (for `$all`: a position), inclusive.
    #[arg(long, value_name = "R")]
    from: Option<u64>,
    /// Read at most this many events.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print one JSON object per event per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// The `$all` filters `read` and `tail` share; at most one is given.
#[derive(Args)]
pub(crate) struct FilterArgs {
    /// `$all` only: events of streams whose name starts with this.
    #[arg(long, value_name = "PREFIX", group = "filter")]
    stream_prefix: Option<String>,
    /// `$all` only: events whose type starts with this.
    #[arg(long, value_name = "PREFIX", group = "filter")]
    type_prefix: Option<String>,
    /// `$all` only: events of streams whose name matches this regex.
    #[arg(long, value_name = "REGEX", group = "filter")]
    stream_regex: Option<String>,
    /// `$all` only: events whose type matches this regex.
    #[arg(long, value_name = "REGEX", group = "filter")]
    type_regex: Option<String>,
}

impl FilterArgs {
    /// The filter given, checked; a usage error when it does not compile.
    pub(crate) fn filter(&self) -> anyhow::Result<Option<EventFilter>> {
        let filter = if let Some(prefix) = &self.stream_prefix {
            EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.clone()])
        } else if let Some(prefix) = &self.type_prefix {
            EventFilter::prefixes(FilterTarget::EventType, vec![prefix.clone()])
        } else if let Some(pattern) = &self.stream_regex {
            EventFilter::regex(FilterTarget::StreamName, pattern)
        } else if let Some(pattern) = &self.type_regex {
            EventFilter::regex(FilterTarget::EventType, pattern)
        } else {
            return Ok(None);
        };
        match filter {
            Ok(filter) => Ok(Some(filter)),
            Err(error) => usage_bail!("{error}; fix the filter and run the command again"),
        }
    }
}

pub(crate) fn run(args: &ReadArgs) -> anyhow::Result<()> {
    let filter = args.filter.filter()?;
    let events = if args.stream == "$all" {
        let open = OpenStore::open(&args.store, Create::Never)?;
        if args.json {
            // One object per line needs no alignment: print each page as it comes, and stop
            // reading when the reader goes away (`| head`).
            let mut lines = Lines::new();
            return read_all(&open, args, filter, |page| {
                for event in &page {
                    if !lines.line(&event_json(event).to_string())? {
                        return Ok(false);
                    }
                }
                Ok(true)
            });
        }
        let mut events = Vec::new();
        read_all(&open, args, filter, |page| {
            events.extend(page);
            Ok(true)
        })?;
        events
    } else {
        if filter.is_some() {
            usage_bail!("filters apply to `$all` only: read '$all' with the filter instead");
        }
        let stream = stream_name(&args.stream)?;
        let open = OpenStore::open(&args.store, Create::Never)?;
        let mut options = if args.backwards {
            ReadStreamOptions::backwards()
        } else {
            ReadStreamOptions::forwards()
        };
        if let Some(from) = args.from {
            options = options.from_revision(from);
        }
        if let Some(count) = args.count {
            options = options.max_count(count);
        }
        match open
            .block_on(open.store.read_stream(&stream, options))
            .map_err(explain)?
        {
            StreamSlice::NotFound => anyhow::bail!(
                "stream {stream} not found: it has no events or was deleted; list the \
                 streams with `strata streams {}`",
                open.place
            ),
            StreamSlice::Found { events, .. } => events,
        }
    };
    print_events(&events, args.json)
}

/// Reads `$all` page by page until the end or `--count` events, handing each page to
/// `take`, which says whether to go on.
fn read_all(
    open: &OpenStore,
    args: &ReadArgs,
    filter: Option<EventFilter>,
    mut take: impl FnMut(Vec<RecordedEvent>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let wanted = args.count.unwrap_or(usize::MAX);
    let mut options = if args.backwards {
        ReadAllOptions::backwards()
    } else {
        ReadAllOptions::forwards()
    };
    if let Some(from) = args.from {
        options = options.from_position(Position(from));
    }
    if let Some(filter) = filter {
        options = options.filter(filter);
    }
    let mut taken = 0;
    while taken < wanted {
        let page_options = options
            .clone()
            .max_count((wanted - taken).min(ALL_PAGE_EVENTS_MAX));
        let page =
            open.block_on(open.store.read_all(page_options))
                .map_err(|error| match error {
                    Error::InvalidArgument { .. } => anyhow::anyhow!(
                        "{error}; give --from a position printed by `strata read '$all'`"
                    ),
                    other => explain(other),
                })?;
        taken += page.events.len();
        if !take(page.events)? || page.is_end {
            break;
        }
        options = options.from_position(page.next_position);
    }
    Ok(())
}
