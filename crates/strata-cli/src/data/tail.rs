//! `strata tail`: follows a stream or `$all` live, like `tail -f`, until interrupted.

use clap::Args;
use strata_core::{
    Position, Revision, SUBSCRIPTION_BUFFER_DEFAULT, SubscribeFrom, Subscription, SubscriptionItem,
    subscribe_to_all, subscribe_to_stream,
};

use super::event_output::event_line;
use super::output::{Lines, colour_enabled};
use super::read::FilterArgs;
use super::{Create, OpenStore, StoreArgs, explain, stream_name, usage_bail};

#[derive(Args)]
pub(crate) struct TailArgs {
    /// Stream to follow, or `$all` for the global log.
    stream: String,
    /// Print the history first, then follow (default: only events appended from now on).
    #[arg(long)]
    from_start: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print one JSON object per event per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Follows until SIGINT, the reader closing the pipe, or the subscription failing.
pub(crate) fn run(args: &TailArgs) -> anyhow::Result<()> {
    let filter = args.filter.filter()?;
    let open = OpenStore::open(&args.store, Create::Never)?;
    let store = open.store.clone();
    let subscription = if args.stream == "$all" {
        let from = if args.from_start {
            SubscribeFrom::Start
        } else {
            SubscribeFrom::<Position>::End
        };
        open.block_on(async { subscribe_to_all(store, from, filter, SUBSCRIPTION_BUFFER_DEFAULT) })
    } else {
        if filter.is_some() {
            usage_bail!("filters apply to `$all` only: tail '$all' with the filter instead");
        }
        let stream = stream_name(&args.stream)?;
        let from = if args.from_start {
            SubscribeFrom::Start
        } else {
            SubscribeFrom::<Revision>::End
        };
        open.block_on(async {
            subscribe_to_stream(store, stream, from, SUBSCRIPTION_BUFFER_DEFAULT)
        })
    };
    open.block_on(follow(subscription, args.json))
}

async fn follow(mut subscription: Subscription, as_json: bool) -> anyhow::Result<()> {
    let colour = !as_json && colour_enabled();
    let mut lines = Lines::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            item = subscription.next() => item,
        };
        let event = match item {
            Some(Ok(SubscriptionItem::Event(event))) => event,
            Some(Ok(SubscriptionItem::CaughtUp | SubscriptionItem::Checkpoint(_))) => continue,
            Some(Err(error)) => return Err(explain(error)),
            None => anyhow::bail!("the store closed the subscription; run `strata tail` again"),
        };
        if !lines.line(&event_line(&event, as_json, colour))? || !lines.flush()? {
            return Ok(());
        }
    }
}
