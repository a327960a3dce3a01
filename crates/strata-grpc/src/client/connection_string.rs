//! KurrentDB connection strings naming one node: `kdb://[USER:PASSWORD@]HOST:PORT` with
//! `?tlsCaFile=CA.pem` (TLS, the default) or `?tls=false` (also `kurrentdb://` and `esdb://`).

use tonic::transport::{Certificate, ClientTlsConfig};

use super::ClientError;

/// The port KurrentDB clients assume when a connection string names none.
const PORT_DEFAULT: u16 = 2113;

/// Where to connect, TLS allowed: the URI of one node, the CA to trust, and the credentials.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SecureTarget {
    /// `https://HOST:PORT`, or `http://HOST:PORT` with `tls=false`.
    pub(super) uri: String,
    pub(super) host: String,
    /// `tlsCaFile`: a PEM file of the CA that signed the server's certificate.
    pub(super) tls_ca_file: Option<String>,
    /// `USER:PASSWORD@` of the connection string.
    pub(super) credentials: Option<(String, String)>,
}

/// Parses a connection string naming one node, over TLS (the default) or not.
pub(super) fn parse_secure(url: &str) -> Result<SecureTarget, ClientError> {
    let plain = parse_node(url)?;
    let (_, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let credentials = authority
        .trim_end_matches('/')
        .rsplit_once('@')
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(user, password)| (user.to_owned(), password.to_owned()));
    let tls_ca_file = query
        .split('&')
        .filter_map(|setting| setting.split_once('='))
        .find(|(key, _)| key.eq_ignore_ascii_case("tlsCaFile"))
        .map(|(_, value)| value.to_owned());
    let tls = plain.tls;
    let uri = if tls {
        plain.uri.replacen("http://", "https://", 1)
    } else {
        plain.uri
    };
    Ok(SecureTarget {
        uri,
        host: plain.host,
        tls_ca_file,
        credentials,
    })
}

struct Node {
    uri: String,
    host: String,
    tls: bool,
}

/// The TLS settings of a target over TLS: trust its CA file, check the host name.
pub(super) fn tls_config(target: &SecureTarget) -> Result<ClientTlsConfig, String> {
    let Some(ca_file) = &target.tls_ca_file else {
        return Err(
            "TLS needs the server's CA: add ?tlsCaFile=CA.pem (or ?tls=false for an \
             --insecure server)"
                .to_owned(),
        );
    };
    let pem = std::fs::read(ca_file).map_err(|error| format!("cannot read {ca_file}: {error}"))?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name(target.host.clone()))
}

fn parse_node(url: &str) -> Result<Node, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("it has no scheme; write kdb://HOST:PORT?tls=false"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "kdb" | "kurrentdb" | "esdb" => {}
        "kdb+discover" | "kurrentdb+discover" | "esdb+discover" => {
            return Err(invalid(
                "cluster discovery is not supported; name one node with kdb://HOST:PORT",
            ));
        }
        _ => {
            return Err(invalid(
                "the scheme must be kdb://, kurrentdb:// or esdb://",
            ));
        }
    }
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_credentials, hosts)| hosts);
    if hosts.contains(',') {
        return Err(invalid(
            "it names several nodes; name one node with kdb://HOST:PORT",
        ));
    }
    let (host, port) =
        host_and_port(hosts).ok_or_else(|| invalid("the host or port is invalid"))?;
    let tls = tls_wanted(query).map_err(|reason| invalid(&reason))?;
    Ok(Node {
        uri: format!("http://{host}:{port}"),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        tls,
    })
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`; the host keeps its brackets.
fn host_and_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok().filter(|port| *port != 0)?,
        None => PORT_DEFAULT,
    };
    Some((host, port))
}

/// Whether the settings ask for TLS. KurrentDB clients default to TLS, so a string without
/// `tls=false` wants it. Keys are case-insensitive, as in KurrentDB's clients.
fn tls_wanted(query: &str) -> Result<bool, String> {
    let mut wanted = true;
    for setting in query.split('&').filter(|setting| !setting.is_empty()) {
        let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
        if key.eq_ignore_ascii_case("tls") {
            wanted = match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("tls must be true or false, not {value:?}")),
            };
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(url: &str) -> String {
        parse_secure(url).expect("parses").uri
    }

    #[test]
    fn the_three_schemes_with_tls_false() {
        assert_eq!(
            uri("kdb://127.0.0.1:2113?tls=false"),
            "http://127.0.0.1:2113"
        );
        assert_eq!(
            uri("kurrentdb://localhost:40000?tls=false"),
            "http://localhost:40000"
        );
        assert_eq!(uri("esdb://localhost?TLS=False"), "http://localhost:2113");
        assert_eq!(
            uri("esdb://admin:changeit@[::1]:2114/?tlsVerifyCert=false&tls=false"),
            "http://[::1]:2114"
        );
    }

    #[test]
    fn tls_is_the_default() {
        for url in ["kdb://localhost:2113", "kdb://localhost:2113?tls=true"] {
            assert_eq!(uri(url), "https://localhost:2113", "{url}");
        }
    }

    #[test]
    fn secure_targets_carry_the_ca_file_and_credentials() {
        let target =
            parse_secure("kurrentdb://admin:changeit@localhost:2113?tlsCaFile=/tmp/ca.pem")
                .expect("parses");
        assert_eq!(target.uri, "https://localhost:2113");
        assert_eq!(target.host, "localhost");
        assert_eq!(target.tls_ca_file.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(
            target.credentials,
            Some(("admin".to_owned(), "changeit".to_owned()))
        );
        let plain = parse_secure("kdb://127.0.0.1:2113?tls=false").expect("parses");
        assert_eq!(plain.uri, "http://127.0.0.1:2113");
        assert_eq!(plain.credentials, None);
    }

    #[test]
    fn other_shapes_are_invalid() {
        for url in [
            "localhost:2113",
            "http://localhost:2113?tls=false",
            "kdb+discover://localhost:2113?tls=false",
            "kdb://a:2113,b:2113?tls=false",
            "kdb://localhost:notaport?tls=false",
            "kdb://localhost:0?tls=false",
            "kdb://:2113?tls=false",
            "kdb://localhost:2113?tls=maybe",
        ] {
            assert!(
                matches!(parse_secure(url), Err(ClientError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
