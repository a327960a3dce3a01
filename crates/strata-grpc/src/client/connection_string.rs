//! KurrentDB connection strings, single node and plain text only:
//! `kdb://HOST:PORT?tls=false` (also `kurrentdb://` and `esdb://`).

use super::ClientError;

/// The port KurrentDB clients assume when a connection string names none.
const PORT_DEFAULT: u16 = 2113;

/// Where to connect: the `http://HOST:PORT` URI of one node.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) uri: String,
}

/// Parses a connection string naming one node with `tls=false`. Credentials are ignored
/// (`strata serve` has no authentication); settings other than `tls` are ignored.
pub(super) fn parse(url: &str) -> Result<Target, ClientError> {
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
    if tls_wanted(query).map_err(|reason| invalid(&reason))? {
        return Err(ClientError::TlsUnsupported {
            url: url.to_owned(),
        });
    }
    Ok(Target {
        uri: format!("http://{host}:{port}"),
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
        parse(url).expect("parses").uri
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
    fn tls_is_refused_and_is_the_default() {
        for url in ["kdb://localhost:2113", "kdb://localhost:2113?tls=true"] {
            assert!(
                matches!(parse(url), Err(ClientError::TlsUnsupported { .. })),
                "{url}"
            );
        }
        let message = parse("kdb://localhost:2113").unwrap_err().to_string();
        assert!(message.contains("tls=false"), "{message}");
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
                matches!(parse(url), Err(ClientError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
