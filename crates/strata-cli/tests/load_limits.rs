//! Load limits of a real `strata serve` process (issue 22, Build 5; issue 15's "10,000 idle
//! connections"): each abuse gets a clear refusal naming its limit, and a probe client keeps
//! being answered. The server is its own process, so its file descriptors and memory are its
//! own: memory is read from `/proc/PID/status`, and the probe's latencies and the server's
//! memory are printed (run with `--no-capture` to see them; docs/RELIABILITY.md has figures).
//! Times are reported, never asserted.
//!
//! `STRATA_LOAD_CONNECTIONS` (default 10,000) and `STRATA_LOAD_SUBSCRIPTIONS` (default
//! 1,000) scale the two floods. `STRATA_TEST_BIN=/path/to/strata` runs another server binary
//! (a release build, say) instead of this test build's, and `STRATA_TEST_STORE=postgres`
//! keeps each server's events in a fresh schema of the PostgreSQL test database
//! (`STRATA_TEST_POSTGRES_URL`) instead of the embedded engine.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kurrentdb::{StreamPosition, SubscribeToAllOptions, SubscriptionEvent};
use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
use strata_grpc::client::{Client as GrpcClient, ClientError};
use support::{Server, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one long step of a test may take before it is called a hang (not a timing
/// claim: the machine may be loaded).
const STEP: Duration = Duration::from_secs(300);

async fn step<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within {STEP:?} (the server hangs?)"),
    }
}

/// A gRPC status code's name (`Unavailable`, `InvalidArgument`, ...).
fn code_name(status: &impl std::fmt::Debug) -> String {
    format!("{status:?}")
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Raises this process's soft limit on open files to its hard limit (the server started
/// afterwards inherits it); the new soft limit.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("the soft open-files limit can be raised");
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A `Vm*` line of `/proc/PID/status`, in KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the server's /proc status is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Prints a test's figures, saying which binary served them on which store.
fn report(figures: String) {
    println!("figures ({}): {figures}", support::server_kind());
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Calls answered by the probe and how long they took.
#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn summary(&mut self) -> String {
        self.0.sort();
        let at = |quantile: f64| {
            let index = ((self.0.len() as f64 - 1.0) * quantile).round() as usize;
            self.0.get(index).copied().unwrap_or_default()
        };
        format!(
            "{} calls, p50 {:?}, p99 {:?}, max {:?}",
            self.0.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

/// A client on its own connection that appends one event after another until stopped,
/// timing each call; every call must succeed.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Latencies, ClientError>>,
}

impl Probe {
    async fn start(server: &Server) -> Probe {
        let client = GrpcClient::connect(&server.url()).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let stream = StreamName::new("probe-1").unwrap();
            let mut latencies = Latencies::default();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                client
                    .append(
                        &stream,
                        ExpectedRevision::Any,
                        vec![ProposedEvent::json("Probed", "{}")],
                    )
                    .await?;
                latencies.0.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(latencies)
        });
        // The probe holds its connection (and its place under the limit) from here on.
        Probe { stop, task }
    }

    async fn finish(self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        let latencies = within("the probe's last call", self.task)
            .await
            .unwrap()
            .expect("every call of the probe is answered");
        assert!(!latencies.0.is_empty(), "the probe made calls");
        latencies
    }
}

/// One HTTP/1.1 request on its own connection; what arrived before the server closed it
/// (nothing when it was closed unanswered).
async fn try_http(address: SocketAddr, request: &str) -> String {
    let Ok(mut tcp) = TcpStream::connect(address).await else {
        return String::new();
    };
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = within("an answer or a close", tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(address: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
}

/// A JSON string of `bytes` bytes (quotes included).
fn json_string(bytes: usize) -> Bytes {
    let mut data = vec![b'x'; bytes];
    data[0] = b'"';
    data[bytes - 1] = b'"';
    Bytes::from(data)
}

/// Waits for `subscription`'s confirmation; the error as text when it is refused.
async fn confirmed(subscription: &mut kurrentdb::Subscription) -> Result<(), String> {
    loop {
        match subscription.next_subscription_event().await {
            Ok(SubscriptionEvent::Confirmed(_)) => return Ok(()),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Subscribes to `$all` through `client` (one connection) again and again, keeping each
/// subscription, until one is refused: the subscriptions held and the refusal.
async fn subscribe_until_refused(
    client: &kurrentdb::Client,
    options: &SubscribeToAllOptions,
    limit: usize,
) -> (Vec<kurrentdb::Subscription>, String) {
    let mut held = Vec::new();
    loop {
        let mut subscription = client.subscribe_to_all(options).await;
        match confirmed(&mut subscription).await {
            Ok(()) => held.push(subscription),
            Err(error) => return (held, error),
        }
        assert!(held.len() <= limit, "no refusal past the limit");
    }
}

/// A subscription through `client` once a place comes back (up to 1,000 tries, 10 ms apart).
async fn subscribe_again(
    client: &kurrentdb::Client,
    options: &SubscribeToAllOptions,
) -> Option<kurrentdb::Subscription> {
    for _ in 0..1_000 {
        let mut subscription = client.subscribe_to_all(options).await;
        if confirmed(&mut subscription).await.is_ok() {
            return Some(subscription);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn address(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_over_the_limit_are_refused_and_a_probe_is_served() {
    const LIMIT: usize = 1_000;
    let connections = env_count("STRATA_LOAD_CONNECTIONS", 10_000);
    let open_files = raise_open_files_limit();
    assert!(
        open_files >= connections as u64 + 1_024,
        "this test opens {connections} connections: the hard open-files limit ({open_files}) \
         is too low (ulimit -Hn)"
    );
    let server = Server::start_with(&[
        "--insecure",
        "--max-connections",
        &LIMIT.to_string(),
        // The idle connections under the limit keep their places for the whole test.
        "--header-timeout-ms",
        "600000",
    ]);
    let address = address(&server);
    let rss_before = vm_kib(server.pid(), "VmRSS");
    let probe = Probe::start(&server).await;

    let flood_started = Instant::now();
    let mut flood = Vec::with_capacity(connections);
    let mut connect_failures = 0_usize;
    for _ in 0..connections {
        match within("a connect", TcpStream::connect(address)).await {
            Ok(tcp) => flood.push(tcp),
            Err(_) => connect_failures += 1,
        }
    }
    let flood_took = flood_started.elapsed();
    assert_eq!(connect_failures, 0, "the listener accepts every connection");

    // A fresh request gets the refusal naming the limit; connections over the limit beyond
    // the refusals under way are closed unanswered, so a client may have to ask again.
    let mut refusal = None;
    for _ in 0..1_000 {
        let answer = try_http(address, &get(address, "/health/live")).await;
        if !answer.is_empty() {
            refusal = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refusal = refusal.expect("the server answered a fresh request");
    assert!(
        refusal.starts_with("HTTP/1.1 503")
            && refusal.contains(&format!("limit of {LIMIT} open connections")),
        "{refusal}"
    );
    // gRPC: a new client's call is refused UNAVAILABLE naming the limit (its connection may
    // also be closed unanswered while many refusals are under way: it then connects again).
    let mut grpc_refusal = None;
    for _ in 0..1_000 {
        let Ok(grpc) = GrpcClient::connect(&server.url()).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match grpc
            .append(
                &StreamName::new("refused-1").unwrap(),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("E", "{}")],
            )
            .await
        {
            Err(ClientError::Rpc { status, .. })
                if code_name(&status.code()) == "Unavailable"
                    && status.message().contains("open connections") =>
            {
                grpc_refusal = Some(status.message().to_owned());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(_) => panic!("an append over the connection limit was served"),
        }
    }
    let grpc_refusal = grpc_refusal.expect("a gRPC call over the limit is refused UNAVAILABLE");
    assert!(
        grpc_refusal.contains(&format!("limit of {LIMIT} open connections")),
        "{grpc_refusal}"
    );
    let rss_flooded = vm_kib(server.pid(), "VmRSS");
    let mut latencies = probe.finish().await;

    drop(flood);
    let mut resumed = false;
    for _ in 0..2_000 {
        let answer = try_http(address, &get(address, "/health/live")).await;
        if answer.starts_with("HTTP/1.1 204") {
            resumed = true;
            break;
        }
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(resumed, "service resumed once the flood closed");
    report(format!(
        "{connections} connections against a limit of {LIMIT}, opened in {flood_took:?}; \
         refusal: {}; probe during the flood: {}; server RSS {:.1} MiB before, {:.1} MiB flooded, \
         peak {:.1} MiB",
        refusal.lines().next().unwrap_or_default(),
        latencies.summary(),
        mib(rss_before),
        mib(rss_flooded),
        mib(vm_kib(server.pid(), "VmHWM")),
    ));
}

/// Events appended under load by the slow-consumer test: `EVENTS` events of `EVENT_BYTES`.
const EVENTS: usize = 128;
const EVENT_BYTES: usize = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_do_not_hold_up_the_writer_or_the_other_subscribers() {
    let subscriptions = env_count("STRATA_LOAD_SUBSCRIPTIONS", 1_000);
    // HTTP/2 serves 200 calls at once per connection: 100 subscriptions per client. The
    // readers have a client of their own: unread answers on a connection use up its HTTP/2
    // window on the client's side, which would starve readers sharing it.
    const PER_CLIENT: usize = 100;
    let readers = (subscriptions / 10).clamp(1, PER_CLIENT);
    let slow_count = subscriptions - readers;
    raise_open_files_limit();
    let server = Server::start_with(&[
        "--insecure",
        "--max-subscriptions",
        &subscriptions.to_string(),
        // All of them come from 127.0.0.1.
        "--max-subscriptions-per-address",
        &subscriptions.to_string(),
    ]);
    let pid = server.pid();
    let rss_before = vm_kib(pid, "VmRSS");
    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    let slow_clients: Vec<kurrentdb::Client> = (0..slow_count.div_ceil(PER_CLIENT))
        .map(|_| server.client())
        .collect();
    let mut slow = Vec::with_capacity(slow_count);
    for index in 0..slow_count {
        let mut subscription = slow_clients[index / PER_CLIENT]
            .subscribe_to_all(&options)
            .await;
        // Confirmed, so live on the server; then never read again.
        within(
            "a subscription's confirmation",
            confirmed(&mut subscription),
        )
        .await
        .unwrap_or_else(|error| panic!("subscription {index} refused: {error}"));
        slow.push(subscription);
    }
    let reader_client = server.client();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut fast = tokio::task::JoinSet::new();
    for index in 0..readers {
        let mut subscription = reader_client.subscribe_to_all(&options).await;
        within(
            "a subscription's confirmation",
            confirmed(&mut subscription),
        )
        .await
        .unwrap_or_else(|error| panic!("reader {index} refused: {error}"));
        let delivered = Arc::clone(&delivered);
        fast.spawn(async move {
            let mut seen = 0;
            while seen < EVENTS {
                let event = subscription.next().await.expect("a reader is served");
                if event
                    .get_original_event()
                    .stream_id()
                    .starts_with("loaded-")
                {
                    seen += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let rss_subscribed = vm_kib(pid, "VmRSS");

    let writer = GrpcClient::connect(&server.url()).await.unwrap();
    let data = json_string(EVENT_BYTES);
    let stream = StreamName::new("loaded-1").unwrap();
    let mut latencies = Latencies::default();
    for _ in 0..EVENTS {
        let event = ProposedEvent {
            data: data.clone(),
            ..ProposedEvent::json("Loaded", "{}")
        };
        let sent = Instant::now();
        within(
            "an append beside slow consumers",
            writer.append(&stream, ExpectedRevision::Any, vec![event]),
        )
        .await
        .expect("the writer is served beside slow consumers");
        latencies.0.push(sent.elapsed());
    }
    step("the fast readers", async {
        while let Some(finished) = fast.join_next().await {
            finished.expect("a fast reader got every event");
        }
    })
    .await;
    assert_eq!(
        delivered.load(Ordering::Relaxed),
        (readers * EVENTS) as u64,
        "each fast reader got every event"
    );
    // The server still answers a fresh client.
    let answer = try_http(address(&server), &get(address(&server), "/health/live")).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let rss_loaded = vm_kib(pid, "VmRSS");
    drop(slow);
    report(format!(
        "{subscriptions} live subscriptions on $all ({slow_count} never read, {} read \
         all); {EVENTS} appends of {} KiB: {}; server RSS {:.1} MiB before, {:.1} MiB subscribed, \
         {:.1} MiB after the appends ({:.1} KiB per slow subscription), peak {:.1} MiB",
        readers,
        EVENT_BYTES / 1024,
        latencies.summary(),
        mib(rss_before),
        mib(rss_subscribed),
        mib(rss_loaded),
        rss_loaded.saturating_sub(rss_subscribed) as f64 / slow_count.max(1) as f64,
        mib(vm_kib(pid, "VmHWM")),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opening_subscriptions_in_a_loop_is_refused_at_the_limit() {
    const GRPC_LIMIT: usize = 100;
    const HTTP_LIMIT: usize = 50;
    let server = Server::start_with(&[
        "--insecure",
        "--max-subscriptions",
        &GRPC_LIMIT.to_string(),
        "--http-max-subscriptions",
        &HTTP_LIMIT.to_string(),
    ]);
    let probe = Probe::start(&server).await;

    // gRPC: one client subscribes again and again, keeping every subscription.
    let abuser = server.client();
    let options = SubscribeToAllOptions::default().position(StreamPosition::End);
    let (mut held, refusal) = step(
        "the gRPC subscription loop",
        subscribe_until_refused(&abuser, &options, GRPC_LIMIT),
    )
    .await;
    assert_eq!(held.len(), GRPC_LIMIT, "{refusal}");
    assert!(
        refusal.contains(&format!("limit of {GRPC_LIMIT} subscriptions")),
        "the refusal names the limit: {refusal}"
    );

    // HTTP: the same, each subscription on its own connection.
    let address = address(&server);
    let mut streaming = Vec::new();
    let http_refusal = step("the HTTP subscription loop", async {
        loop {
            let mut tcp = TcpStream::connect(address).await.unwrap();
            tcp.write_all(
                format!("GET /v1/subscriptions/all?from=end HTTP/1.1\r\nHost: {address}\r\nAccept: application/x-ndjson\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let head = read_head(&mut tcp).await;
            if head.starts_with("HTTP/1.1 200") {
                streaming.push(tcp);
                assert!(streaming.len() <= HTTP_LIMIT, "no refusal past the limit");
                continue;
            }
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
            break format!("{head}{}", String::from_utf8_lossy(&rest));
        }
    })
    .await;
    assert_eq!(streaming.len(), HTTP_LIMIT, "{http_refusal}");
    assert!(http_refusal.starts_with("HTTP/1.1 429"), "{http_refusal}");
    assert!(
        http_refusal.contains(&HTTP_LIMIT.to_string()),
        "the refusal names the limit: {http_refusal}"
    );

    let mut latencies = probe.finish().await;
    // A place comes back when a subscription ends.
    held.pop();
    let again = subscribe_again(&abuser, &options).await;
    assert!(again.is_some(), "an ended subscription's place came back");
    held.extend(again);
    report(format!(
        "gRPC refusal after {GRPC_LIMIT}: {refusal}; HTTP refusal after {HTTP_LIMIT}: {}; \
         probe during the loops: {}",
        http_refusal.lines().next().unwrap_or_default(),
        latencies.summary()
    ));
}

/// Reads an HTTP/1.1 answer's head (up to the blank line).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match within("an answer head", tcp.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

const GIB: u64 = 1024 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_append_is_refused_early_naming_the_limit_over_grpc_and_http() {
    let server = Server::start_with(&["--insecure"]);
    let pid = server.pid();
    let address = address(&server);
    let peak_before = vm_kib(pid, "VmHWM");

    // gRPC: 1 GiB in 64 KiB events (each under the event limit), streamed as the client
    // produces them; the server refuses once the append passes its byte limit.
    const EVENT_BYTES: usize = 64 * 1024;
    let data = json_string(EVENT_BYTES);
    let events: Vec<ProposedEvent> = (0..GIB as usize / EVENT_BYTES)
        .map(|_| ProposedEvent {
            data: data.clone(),
            ..ProposedEvent::json("Huge", "{}")
        })
        .collect();
    let client = GrpcClient::connect(&server.url()).await.unwrap();
    let sent = Instant::now();
    let refused = step(
        "the 1 GiB gRPC append",
        client.append(
            &StreamName::new("huge-1").unwrap(),
            ExpectedRevision::Any,
            events,
        ),
    )
    .await
    .expect_err("a 1 GiB append is refused");
    let grpc_took = sent.elapsed();
    let ClientError::Rpc { status, .. } = &refused else {
        panic!("expected a gRPC status, got {refused:?}");
    };
    assert_eq!(code_name(&status.code()), "InvalidArgument", "{status:?}");
    assert!(
        status
            .message()
            .contains(&strata_core::APPEND_BYTES_MAX.to_string()),
        "the refusal names the limit: {}",
        status.message()
    );
    let peak_grpc = vm_kib(pid, "VmHWM");
    assert!(
        peak_grpc.saturating_sub(peak_before) * 1024 < GIB / 2,
        "the server did not hold the 1 GiB: peak RSS grew by {:.1} MiB",
        mib(peak_grpc - peak_before)
    );

    // HTTP, declared: refused from the head, before any of the body is read.
    let declared = huge_http_body(address, true).await;
    assert!(
        declared.answer.starts_with("HTTP/1.1 413"),
        "{}",
        declared.answer
    );
    let http_limit = strata_http::HTTP_BODY_BYTES_MAX_DEFAULT.to_string();
    assert!(declared.answer.contains(&http_limit), "{}", declared.answer);
    // HTTP, chunked (no length): refused once the body passes the limit.
    let chunked = huge_http_body(address, false).await;
    assert!(
        chunked.answer.starts_with("HTTP/1.1 413"),
        "{}",
        chunked.answer
    );
    assert!(chunked.answer.contains(&http_limit), "{}", chunked.answer);
    for sent in [declared.sent, chunked.sent] {
        assert!(
            sent < GIB,
            "the refusal came before the whole body ({sent} bytes)"
        );
    }
    let peak_http = vm_kib(pid, "VmHWM");
    assert!(
        peak_http.saturating_sub(peak_before) * 1024 < GIB / 2,
        "the server did not hold the 1 GiB: peak RSS grew by {:.1} MiB",
        mib(peak_http - peak_before)
    );
    // Nothing was written, and the server serves on.
    let read = try_http(address, &get(address, "/v1/streams/huge-1")).await;
    assert!(read.starts_with("HTTP/1.1 404"), "{read}");
    report(format!(
        "gRPC 1 GiB append refused after {grpc_took:?}: {}; HTTP with Content-Length \
         1 GiB: {} after {} bytes sent; HTTP chunked: {} after {} bytes sent; server peak RSS \
         {:.1} MiB before, {:.1} MiB after gRPC, {:.1} MiB after HTTP",
        status.message(),
        declared.answer.lines().next().unwrap_or_default(),
        declared.sent,
        chunked.answer.lines().next().unwrap_or_default(),
        chunked.sent,
        mib(peak_before),
        mib(peak_grpc),
        mib(peak_http),
    ));
}

struct HugeBody {
    answer: String,
    /// Body bytes this client wrote before the answer came (or the server stopped reading).
    sent: u64,
}

/// POSTs a 1 GiB append body (declared with `Content-Length`, or chunked) while reading the
/// answer; stops writing once the answer has come.
async fn huge_http_body(address: SocketAddr, declared: bool) -> HugeBody {
    let tcp = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let framing = if declared {
        format!("Content-Length: {GIB}")
    } else {
        "Transfer-Encoding: chunked".to_owned()
    };
    let head = format!(
        "POST /v1/streams/huge-1 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writing = {
        let (answered, sent) = (Arc::clone(&answered), Arc::clone(&sent));
        tokio::spawn(async move {
            const CHUNK: usize = 64 * 1024;
            let mut body =
                b"{\"expectedRevision\":\"any\",\"events\":[{\"type\":\"Huge\",\"data\":\""
                    .to_vec();
            body.resize(CHUNK, b'x');
            let mut chunk = body;
            while !answered.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < GIB {
                let frame = if declared {
                    chunk.clone()
                } else {
                    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                    frame.extend_from_slice(&chunk);
                    frame.extend_from_slice(b"\r\n");
                    frame
                };
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                chunk.fill(b'x');
            }
        })
    };
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    step("the answer to a 1 GiB body", async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    answer.extend_from_slice(&buffer[..read]);
                    answered.store(true, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&answer);
                    // The whole problem document (its length is announced).
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head.lines().find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|value| value.trim().parse::<usize>().ok())
                        });
                        if length.is_some_and(|length| body.len() >= length) {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    answered.store(true, Ordering::Relaxed);
    writing.abort();
    let _ = writing.await;
    HugeBody {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        sent: sent.load(Ordering::Relaxed),
    }
}

/// Opens HTTP subscriptions to `$all` over one HTTP/2 connection until one is refused;
/// (the subscriptions' request handles, kept open, and the refusal's status and body).
async fn http2_subscriptions_until_refused(
    address: SocketAddr,
    most: usize,
) -> (Vec<hyper::Response<hyper::body::Incoming>>, String) {
    use http_body_util::BodyExt as _;
    let tcp = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("an HTTP/2 connection (prior knowledge)");
    tokio::spawn(connection);
    let mut open = Vec::new();
    loop {
        let request =
            hyper::Request::get(format!("http://{address}/v1/subscriptions/all?from=end"))
                .header("accept", "application/x-ndjson")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
        let response = within(
            "an HTTP/2 subscription's answer",
            sender.send_request(request),
        )
        .await
        .expect("an answer");
        if response.status() == 200 {
            open.push(response);
            assert!(open.len() <= most, "no refusal past the limit");
            continue;
        }
        let status = response.status();
        let body = within("the refusal's body", response.into_body().collect())
            .await
            .expect("a body")
            .to_bytes();
        return (open, format!("{status} {}", String::from_utf8_lossy(&body)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_is_refused_at_its_subscription_limit_and_other_connections_are_served() {
    const PER_CONNECTION: usize = 20;
    let server = Server::start_with(&[
        "--insecure",
        "--max-subscriptions-per-connection",
        &PER_CONNECTION.to_string(),
    ]);
    let probe = Probe::start(&server).await;

    // gRPC: one client (one connection) subscribes again and again, keeping each.
    let abuser = server.client();
    let options = SubscribeToAllOptions::default().position(StreamPosition::End);
    let (mut held, refusal) = step(
        "the gRPC subscription loop",
        subscribe_until_refused(&abuser, &options, PER_CONNECTION),
    )
    .await;
    assert_eq!(held.len(), PER_CONNECTION, "{refusal}");
    assert!(
        refusal.contains("resource has been exhausted")
            && refusal.contains(&format!(
                "this connection already holds its limit of {PER_CONNECTION} subscriptions"
            )),
        "the refusal names the per-connection limit: {refusal}"
    );
    // Another connection is not held back by the first one's subscriptions.
    let other = server.client();
    let mut others = Vec::new();
    for _ in 0..PER_CONNECTION {
        let mut subscription = other.subscribe_to_all(&options).await;
        within(
            "another connection's subscription",
            confirmed(&mut subscription),
        )
        .await
        .expect("another connection subscribes");
        others.push(subscription);
    }
    // A place comes back on the connection when one of its subscriptions ends.
    held.pop();
    let again = subscribe_again(&abuser, &options).await;
    assert!(again.is_some(), "an ended subscription's place came back");
    held.extend(again);

    // HTTP over one HTTP/2 connection: the same bound, answered 429.
    let (open, http_refusal) = step(
        "the HTTP/2 subscription loop",
        http2_subscriptions_until_refused(address(&server), PER_CONNECTION),
    )
    .await;
    assert_eq!(open.len(), PER_CONNECTION, "{http_refusal}");
    assert!(
        http_refusal.starts_with("429")
            && http_refusal.contains("too-many-subscriptions")
            && http_refusal.contains(&format!("limit of {PER_CONNECTION} subscriptions")),
        "{http_refusal}"
    );
    let (more, _) = step(
        "HTTP/2 subscriptions on a second connection",
        http2_subscriptions_until_refused(address(&server), PER_CONNECTION),
    )
    .await;
    assert_eq!(
        more.len(),
        PER_CONNECTION,
        "a second connection has its own places"
    );

    let mut latencies = probe.finish().await;
    report(format!(
        "per-connection limit {PER_CONNECTION}: gRPC refusal: {refusal}; HTTP/2 \
         refusal: {}; probe: {}",
        http_refusal.lines().next().unwrap_or_default(),
        latencies.summary()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_refused_at_its_subscription_limit_and_other_addresses_are_served()
 {
    const PER_CONNECTION: usize = 20;
    const PER_ADDRESS: usize = 30;
    let server = Server::start_with(&[
        "--insecure",
        "--max-subscriptions-per-connection",
        &PER_CONNECTION.to_string(),
        "--max-subscriptions-per-address",
        &PER_ADDRESS.to_string(),
    ]);
    let probe = Probe::start(&server).await;
    let options = SubscribeToAllOptions::default().position(StreamPosition::End);

    // gRPC from 127.0.0.1: a first connection fills its own places, a second one the rest
    // of the address's, then is refused naming the address's limit.
    let first = server.client();
    let (first_held, first_refusal) = step(
        "the first connection's subscription loop",
        subscribe_until_refused(&first, &options, PER_CONNECTION),
    )
    .await;
    assert_eq!(first_held.len(), PER_CONNECTION, "{first_refusal}");
    assert!(
        first_refusal.contains("this connection already holds its limit"),
        "{first_refusal}"
    );
    let second = server.client();
    let (mut second_held, refusal) = step(
        "the second connection's subscription loop",
        subscribe_until_refused(&second, &options, PER_ADDRESS - PER_CONNECTION),
    )
    .await;
    assert_eq!(second_held.len(), PER_ADDRESS - PER_CONNECTION, "{refusal}");
    assert!(
        refusal.contains("resource has been exhausted")
            && refusal.contains(&format!(
                "the connections from this client address already hold their limit of \
                 {PER_ADDRESS} subscriptions together"
            ))
            && refusal.contains("--max-subscriptions-per-address"),
        "the refusal names the per-address limit: {refusal}"
    );

    // HTTP from the same address, on a third connection: refused 429 at once.
    let (none, http_refusal) = step(
        "an HTTP/2 subscription from the same address",
        http2_subscriptions_until_refused(address(&server), 0),
    )
    .await;
    assert!(none.is_empty());
    assert!(
        http_refusal.starts_with("429")
            && http_refusal.contains("too-many-subscriptions")
            && http_refusal.contains("subscriptions per client address")
            && http_refusal.contains(&format!("limit of {PER_ADDRESS} subscriptions")),
        "{http_refusal}"
    );

    // Another client address (127.0.0.2, also loopback) has places of its own.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 2], 0)))
        .expect("127.0.0.2 is a loopback address");
    let server_address = address(&server);
    let mut other = socket.connect(server_address).await.unwrap();
    other
        .write_all(
            format!(
                "GET /v1/subscriptions/all?from=end HTTP/1.1\r\nHost: {server_address}\r\n\
                 Accept: application/x-ndjson\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = read_head(&mut other).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "another address subscribes: {head}"
    );

    // A place comes back to the address when one of its subscriptions ends.
    second_held.pop();
    let again = subscribe_again(&second, &options).await;
    assert!(again.is_some(), "an ended subscription's place came back");
    second_held.extend(again);

    let mut latencies = probe.finish().await;
    report(format!(
        "per-address limit {PER_ADDRESS} (per connection {PER_CONNECTION}): gRPC refusal on \
         the second connection: {refusal}; HTTP/2 refusal: {}; probe: {}",
        http_refusal.lines().next().unwrap_or_default(),
        latencies.summary()
    ));
    drop((first_held, second_held, other));
}

/// Slow subscribers of the memory test, the events appended while they do not read, and
/// each event's size: a 32 MiB backlog, more than any subscription buffer.
const SLOW_SUBSCRIBERS: usize = 40;
const BACKLOG_EVENTS: usize = 256;
const BACKLOG_EVENT_BYTES: usize = 128 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_holds_a_bounded_part_of_a_large_backlog() {
    let server = Server::start();
    let pid = server.pid();
    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    // Half over gRPC (one client each, so no client-side window is shared), half over
    // HTTP/1.1 NDJSON; none reads after its first answer.
    let mut grpc = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..SLOW_SUBSCRIBERS / 2 {
        let client = server.client();
        let mut subscription = client.subscribe_to_all(&options).await;
        within("a confirmation", confirmed(&mut subscription))
            .await
            .expect("subscribed");
        grpc.push(subscription);
        clients.push(client);
    }
    let address = address(&server);
    let mut http = Vec::new();
    for _ in 0..SLOW_SUBSCRIBERS / 2 {
        let mut tcp = TcpStream::connect(address).await.unwrap();
        tcp.write_all(
            format!(
                "GET /v1/subscriptions/all?from=start HTTP/1.1\r\nHost: {address}\r\n\
                 Accept: application/x-ndjson\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        http.push(tcp);
    }
    let rss_subscribed = vm_kib(pid, "VmRSS");
    let writer = GrpcClient::connect(&server.url()).await.unwrap();
    let data = json_string(BACKLOG_EVENT_BYTES);
    let stream = StreamName::new("backlog-1").unwrap();
    for _ in 0..BACKLOG_EVENTS {
        let event = ProposedEvent {
            data: data.clone(),
            ..ProposedEvent::json("Backlog", "{}")
        };
        within(
            "an append beside slow subscribers",
            writer.append(&stream, ExpectedRevision::Any, vec![event]),
        )
        .await
        .expect("appended");
    }
    // The subscriptions' readers fill their buffers and stop; let them get there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_loaded = vm_kib(pid, "VmRSS");
    let backlog_mib = (BACKLOG_EVENTS * BACKLOG_EVENT_BYTES) as f64 / (1024.0 * 1024.0);
    let per_subscriber = mib(rss_loaded.saturating_sub(rss_subscribed)) / SLOW_SUBSCRIBERS as f64;
    report(format!(
        "{SLOW_SUBSCRIBERS} subscribers that never read ({} gRPC, {} HTTP) behind a \
         {backlog_mib:.0} MiB backlog: server RSS {:.1} MiB subscribed, {:.1} MiB after the \
         appends, {per_subscriber:.2} MiB per slow subscriber; peak {:.1} MiB",
        grpc.len(),
        http.len(),
        mib(rss_subscribed),
        mib(rss_loaded),
        mib(vm_kib(pid, "VmHWM")),
    ));
    // Each holds its buffers (a few MiB), not the backlog, nor the 16 MiB of the earlier
    // buffers (docs/RELIABILITY.md).
    assert!(
        per_subscriber < 8.0,
        "{per_subscriber:.2} MiB per slow subscriber behind a {backlog_mib:.0} MiB backlog"
    );
    drop((grpc, http, clients));
}
