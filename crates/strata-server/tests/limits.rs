//! The server's bound on open connections, and `/info`, over real loopback connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};
use strata_grpc::client::{Client, ClientError};
use strata_server::{ServeConfig, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _store: Arc<Store>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(config: ServeConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let server = Server::bind(&ServeConfig {
        bind: vec![Ipv4Addr::LOCALHOST.into()],
        port: 0,
        ..config
    })
    .await
    .unwrap();
    let address = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(Arc::clone(&store), async {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop: Some(stop),
        _store: store,
        _dir: dir,
    }
}

fn url(address: SocketAddr) -> String {
    format!("kdb://{address}?tls=false")
}

async fn append_one(client: &Client) -> Result<(), ClientError> {
    let stream = StreamName::new("limited-1").unwrap();
    let event = ProposedEvent::json("E", "{}");
    client
        .append(&stream, ExpectedRevision::Any, vec![event])
        .await
        .map(|_| ())
}

/// One HTTP/1.1 request on its own connection; the whole answer.
async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_limit_is_answered_unavailable_and_closed_until_one_leaves() {
    let running = start(ServeConfig {
        connections_max: 1,
        ..ServeConfig::default()
    })
    .await;
    let first = Client::connect(&url(running.address)).await.unwrap();
    append_one(&first).await.unwrap();

    let second = Client::connect(&url(running.address)).await.unwrap();
    let refused = append_one(&second).await.unwrap_err();
    let ClientError::Rpc { status, .. } = &refused else {
        panic!("expected a gRPC status, got {refused:?}");
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("limit of 1 open connections"),
        "the refusal names the limit: {}",
        status.message()
    );
    let http = http_get(running.address, "/health/live").await;
    assert!(http.starts_with("HTTP/1.1 503"), "{http}");
    assert!(http.contains("--max-connections"), "{http}");

    drop((first, second));
    // The place comes back once the server sees the first connection close.
    for attempt in 0.. {
        let client = Client::connect(&url(running.address)).await.unwrap();
        match append_one(&client).await {
            Ok(()) => break,
            Err(ClientError::Rpc { status, .. }) if status.code() == tonic::Code::Unavailable => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
        assert!(
            attempt < 1_000,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn info_says_which_strata_which_kurrentdb_protocol_and_which_store() {
    let running = start(ServeConfig {
        store_kind: "engine".into(),
        ..ServeConfig::default()
    })
    .await;
    let answer = http_get(running.address, "/info").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let info: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(info["strataVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["esVersion"], strata_grpc::KURRENTDB_COMPATIBLE_VERSION);
    assert_eq!(info["dbVersion"], strata_grpc::KURRENTDB_COMPATIBLE_VERSION);
    assert_eq!(info["store"], "engine");
    assert_eq!(info["state"], "leader");
}

/// A TLS connection to `address` that checks the server's certificate against `ca`.
async fn tls_connect(
    address: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_connection_over_the_limit_is_refused_after_the_handshake() {
    let certificates = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate_chain = certificates.path().join("node.crt");
    let private_key = certificates.path().join("node.key");
    std::fs::write(&certificate_chain, certified.cert.pem()).unwrap();
    std::fs::write(&private_key, certified.key_pair.serialize_pem()).unwrap();
    let running = start(ServeConfig {
        connections_max: 1,
        tls: Some(strata_server::TlsFiles {
            certificate_chain,
            private_key,
        }),
        ..ServeConfig::default()
    })
    .await;
    let ca = certified.cert.der().clone();
    let _first = tls_connect(running.address, &ca).await;
    let mut second = tls_connect(running.address, &ca).await;
    second
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server may close without a TLS close_notify: what came before counts.
    let _ = second.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("limit of 1 open connections"), "{answer}");
}

/// Reads until the server closes `tcp` (or resets it); what arrived before. The bound only
/// keeps a broken test from hanging.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One HTTP/1.1 request on its own connection; what arrived before the server closed it
/// (nothing when it was closed unanswered).
async fn try_http_get(address: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    read_until_closed(&mut tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let running = start(ServeConfig {
        header_timeout: std::time::Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(running.address)
        .await
        .unwrap();
    let answer = read_until_closed(&mut silent).await;
    assert!(answer.is_empty(), "{answer}");
    // The server serves on.
    let live = http_get(running.address, "/health/live").await;
    assert!(live.starts_with("HTTP/1.1 204"), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_request_head_byte_by_byte_is_cut_off() {
    let running = start(ServeConfig {
        header_timeout: std::time::Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    for first_request in [true, false] {
        let tcp = tokio::net::TcpStream::connect(running.address)
            .await
            .unwrap();
        let (mut reader, mut writer) = tcp.into_split();
        if !first_request {
            // A whole first request, so the trickled head is the second one.
            writer
                .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        }
        // A head that never ends: one more header byte every 20 ms until the server closes.
        let trickle = tokio::spawn(async move {
            let mut head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 100_000));
            for byte in head {
                if writer.write_all(&[byte]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        });
        let mut answer = Vec::new();
        let mut buffer = [0_u8; 4096];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => answer.extend_from_slice(&buffer[..read]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept the trickling connection");
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer);
        let answered = answer.matches("HTTP/1.1 204").count();
        assert_eq!(
            answered,
            usize::from(!first_request),
            "only the whole request is answered: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_beyond_the_limit_get_a_clear_refusal_and_service_resumes() {
    const LIMIT: usize = 16;
    // Client and server ends of each connection are file descriptors of this process.
    const IDLE: usize = 1_000;
    let running = start(ServeConfig {
        connections_max: LIMIT,
        ..ServeConfig::default()
    })
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(running.address)
                .await
                .unwrap(),
        );
    }
    // A fresh request gets an answer: the refusal naming the limit (or, should an idle
    // connection's place have come free, the service itself); never silence. Connections
    // over the limit beyond the refusals under way are closed unanswered, so a client may
    // have to ask again.
    let mut refused = None;
    for _ in 0..1_000 {
        let answer = try_http_get(running.address, "/health/live").await;
        if !answer.is_empty() {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let answer = refused.expect("the server answered a fresh request");
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("limit of 16 open connections"),
        "{answer}"
    );

    drop(idle);
    for attempt in 0.. {
        let answer = try_http_get(running.address, "/health/live").await;
        if answer.starts_with("HTTP/1.1 204") {
            break;
        }
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        assert!(attempt < 1_000, "service never resumed: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
