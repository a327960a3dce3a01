//! TLS for the listeners: a certificate chain and private key from PEM files, ALPN `h2`
//! (gRPC) and `http/1.1` (health, browsers) on the same port.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake before it is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub certificate_chain: PathBuf,
    pub private_key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {reason}; give a PEM file with --tls-cert")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the private key {path}: {reason}; give a PEM file with --tls-key")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate {
        path: files.certificate_chain.clone(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&files.certificate_chain)
            .map_err(|error| certificate_error(error.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|error| certificate_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error("it holds no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.private_key).map_err(|error| TlsError::PrivateKey {
            path: files.private_key.clone(),
            reason: error.to_string(),
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
