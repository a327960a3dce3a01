//! `strata serve` over TLS (its default): the client verifies the server's certificate
//! against the CA it is given, appends and reads; and a server without a certificate or
//! `--insecure` refuses to start.

use super::*;

/// A self-signed certificate for localhost, written as PEM files into `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("a certificate");
    let certificate = dir.join("node.crt");
    let key = dir.join("node.key");
    std::fs::write(&certificate, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write the key");
    (certificate, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_appends_and_reads_over_tls() {
    let certificates = tempfile::tempdir().expect("temp dir");
    let (certificate, key) = self_signed(certificates.path());
    let server = Server::start_with(&[
        "--tls-cert",
        certificate.to_str().expect("UTF-8 path"),
        "--tls-key",
        key.to_str().expect("UTF-8 path"),
    ]);
    let settings: kurrentdb::ClientSettings = format!(
        "esdb://admin:changeit@localhost:{}?tls=true&tlsCaFile={}",
        server.port(),
        certificate.display()
    )
    .parse()
    .expect("connection string parses");
    let client = Client::new(settings).expect("client builds");
    let written = append(
        &client,
        "tls",
        StreamState::NoStream,
        events_with_ids("Secure", &new_ids(2)),
    )
    .await;
    assert_eq!(written.next_expected_version, 1);
    let read = read_stream(&client, "tls", &ReadStreamOptions::default()).await;
    assert_eq!(read.len(), 2, "both events come back over TLS");

    // Plain-text HTTP/2 against the TLS port is refused: nothing is served in the clear.
    let plain: kurrentdb::ClientSettings = format!("esdb://127.0.0.1:{}?tls=false", server.port())
        .parse()
        .expect("connection string parses");
    let plain = Client::new(plain).expect("client builds");
    let refused = within(
        "a plain-text append to the TLS port",
        plain.append_to_stream(
            "tls",
            &AppendToStreamOptions::default(),
            events_with_ids("Plain", &new_ids(1)),
        ),
    )
    .await;
    assert!(
        refused.is_err(),
        "a plain-text client is not served by a TLS server"
    );
}

#[test]
fn serve_without_a_certificate_or_insecure_refuses_to_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("--insecure"),
        "the error says what to do: {stderr}"
    );
}
