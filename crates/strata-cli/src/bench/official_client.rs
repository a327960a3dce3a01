//! The official `kurrentdb` Rust client against the server: the whole of `$all` read
//! through one call, and one writer of single-event appends, twice in the same run: with
//! the client's sockets as it leaves them (Nagle's algorithm on) and with Nagle forced off
//! on its connection. The ratio shows whether the server makes clients wait on delayed
//! acknowledgements (it should be about 1).
//!
//! The client offers no setting for `TCP_NODELAY`, so the bench sets it from outside on the
//! client's connection: it takes a duplicate of each of this process's socket descriptors
//! (`pidfd_getfd`, Linux 5.6+) and sets the option on those connected to the server. The
//! client itself runs unchanged.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, StreamState,
};

use super::latency::LatencySummary;
use super::throughput::Throughput;

/// Each variant appends until `--official-appends` events or this much time, whichever
/// comes first: with delayed acknowledgements a call can take ~40 ms.
const PHASE_DURATION_MAX: Duration = Duration::from_secs(5);

/// The two variants of one run.
pub(super) struct OfficialClientFigures {
    pub(super) nagle_on: Timed,
    pub(super) nagle_off: Timed,
}

impl OfficialClientFigures {
    /// The rate with Nagle on over the rate with it off: about 1 when no call waits for a
    /// delayed acknowledgement.
    pub(super) fn nagle_ratio(&self) -> f64 {
        self.nagle_on.throughput.events_per_sec() / self.nagle_off.throughput.events_per_sec()
    }
}

pub(super) struct Timed {
    pub(super) throughput: Throughput,
    pub(super) latency: LatencySummary,
}

/// Appends `appends_max` events per variant (fewer if a variant runs out of time); each
/// variant also writes one warm-up event.
pub(super) async fn run(
    url: &str,
    event_bytes: u64,
    appends_max: u64,
) -> anyhow::Result<OfficialClientFigures> {
    let settings: ClientSettings = url
        .parse()
        .with_context(|| format!("the official client cannot parse {url}"))?;
    let data = vec![b'x'; usize::try_from(event_bytes).unwrap_or(0)];
    let nagle_on = {
        let client = connect(&settings).await?;
        appends(&client, "bench-official-nagle", &data, appends_max).await?
    };
    let client = connect(&settings).await?;
    let server = server_address(&settings)?;
    let changed = force_nodelay_to(server).context("cannot set TCP_NODELAY on the client")?;
    if changed == 0 {
        bail!("found no connection of the official client to {server}");
    }
    let nagle_off = appends(&client, "bench-official-nodelay", &data, appends_max).await?;
    Ok(OfficialClientFigures {
        nagle_on,
        nagle_off,
    })
}

/// Reads the whole of `$all` forwards in one Read call, as a client catching up would; each
/// event is decoded by the client (into its `ResolvedEvent`) and counted. Fails when `$all`
/// holds fewer than the `written` events of this run.
pub(super) async fn read_all(url: &str, written: u64) -> anyhow::Result<Throughput> {
    let settings: ClientSettings = url
        .parse()
        .with_context(|| format!("the official client cannot parse {url}"))?;
    // No warm-up append: the read must see exactly what the run wrote. The client connects
    // on this first call.
    let client = Client::new(settings)
        .map_err(|error| anyhow::anyhow!("the official client refused its settings: {error}"))?;
    let started = Instant::now();
    let mut events = 0u64;
    let mut read = client
        .read_all(&ReadAllOptions::default().forwards())
        .await
        .context("the official client cannot read $all")?;
    while read
        .next()
        .await
        .context("the official client's read of $all failed")?
        .is_some()
    {
        events += 1;
    }
    let elapsed = started.elapsed();
    if events < written {
        bail!(
            "the official client read {events} events from $all, fewer than the {written} this run appended"
        );
    }
    Ok(Throughput { events, elapsed })
}

/// A client with its connection open (it connects on the first call).
async fn connect(settings: &ClientSettings) -> anyhow::Result<Client> {
    let client = Client::new(settings.clone())
        .map_err(|error| anyhow::anyhow!("the official client refused its settings: {error}"))?;
    let event = EventData::binary("BenchWarmUp", Vec::new().into());
    client
        .append_to_stream("bench-official-warm-up", &Default::default(), event)
        .await
        .context("the official client cannot reach the server")?;
    Ok(client)
}

async fn appends(
    client: &Client,
    stream: &str,
    data: &[u8],
    appends_max: u64,
) -> anyhow::Result<Timed> {
    let mut latencies = Vec::new();
    let started = Instant::now();
    let options = AppendToStreamOptions::default().stream_state(StreamState::Any);
    while (latencies.len() as u64) < appends_max && started.elapsed() < PHASE_DURATION_MAX {
        let event = EventData::binary("BenchEvent", data.to_vec().into());
        let call_started = Instant::now();
        client
            .append_to_stream(stream, &options, event)
            .await
            .with_context(|| format!("a single append to {stream} failed"))?;
        latencies.push(call_started.elapsed());
    }
    Ok(Timed {
        throughput: Throughput {
            events: latencies.len() as u64,
            elapsed: started.elapsed(),
        },
        latency: LatencySummary::from_samples(latencies),
    })
}

/// The address the client connects to (the first host of the connection string).
fn server_address(settings: &ClientSettings) -> anyhow::Result<SocketAddr> {
    let endpoint = settings
        .hosts()
        .first()
        .context("the connection string names no host")?;
    let host = match endpoint.host.as_str() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", endpoint.port)
        .parse()
        .with_context(|| format!("{}:{} is not an IP address", endpoint.host, endpoint.port))
}

/// Sets `TCP_NODELAY` on every socket of this process connected to `server` (`localhost`
/// may have been resolved to either loopback address, so the port is what must match
/// on a loopback peer); returns how many.
#[cfg(target_os = "linux")]
fn force_nodelay_to(server: SocketAddr) -> anyhow::Result<usize> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let pidfd = pidfd_open(getpid(), PidfdFlags::empty()).context("pidfd_open")?;
    let mut changed = 0;
    for entry in std::fs::read_dir("/proc/self/fd").context("listing /proc/self/fd")? {
        let entry = entry?;
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let Ok(socket) = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let Some(peer) = rustix::net::getpeername(&socket)
            .ok()
            .flatten()
            .and_then(|peer| SocketAddr::try_from(peer).ok())
        else {
            continue;
        };
        let same_server = peer == server
            || (peer.port() == server.port()
                && peer.ip().is_loopback()
                && server.ip().is_loopback());
        if same_server && rustix::net::sockopt::set_tcp_nodelay(&socket, true).is_ok() {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(not(target_os = "linux"))]
fn force_nodelay_to(_server: SocketAddr) -> anyhow::Result<usize> {
    bail!("forcing TCP_NODELAY on the official client is implemented on Linux only")
}
