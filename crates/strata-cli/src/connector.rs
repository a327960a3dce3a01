//! `strata connector`: manage the connectors of a running server through its HTTP API
//! (`/connectors`, docs/CONNECTORS.md). The server is named as for the other commands (a
//! `kurrentdb://` connection string: its first host, `tls=false` for plain HTTP, its
//! `tlsCaFile` to trust) or directly by an `http(s)://` URL.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;

use crate::data::{credentials_from_env, usage_bail};

#[derive(Args)]
pub(crate) struct ConnectorArgs {
    /// The server: kurrentdb://admin:changeit@localhost:2113?tlsCaFile=ca.pem, or
    /// http://127.0.0.1:2113. Default: STRATA_SERVER. Credentials not in the URL come from
    /// STRATA_USER and STRATA_PASSWORD.
    #[arg(long, value_name = "URL", global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: ConnectorCommand,
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// List the connectors: state, position, lag, counters, last error.
    List {
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create and start a connector from a JSON definition (id, source, sink, settings).
    Create {
        /// The definition, as JSON text...
        #[arg(long, value_name = "JSON", conflicts_with = "file")]
        definition: Option<String>,
        /// ...or read from this file (`-` for stdin).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// A JavaScript transform (a function from one event to one message) read from this
        /// file; it replaces the definition's `transform`.
        #[arg(long, value_name = "FILE.js")]
        transform: Option<PathBuf>,
    },
    /// Show one connector as JSON (secrets as ***).
    Show { id: String },
    /// Start a stopped connector from its checkpoint.
    Start { id: String },
    /// Stop a connector after its last checkpoint.
    Stop { id: String },
    /// Move a connector's checkpoint: to the start, the end, or after a position (a
    /// revision for a stream source).
    Reset {
        id: String,
        /// `start`, `end` or a number.
        #[arg(long, default_value = "start", value_name = "PLACE")]
        from: String,
    },
    /// Replace a connector's settings with this JSON object (fields left out take their
    /// defaults) and/or its transform; it restarts with them.
    Update {
        id: String,
        #[arg(long, value_name = "JSON", required_unless_present_any = ["transform", "no_transform"])]
        settings: Option<String>,
        /// A new JavaScript transform read from this file.
        #[arg(long, value_name = "FILE.js", conflicts_with = "no_transform")]
        transform: Option<PathBuf>,
        /// Remove the transform: events are published as they are.
        #[arg(long)]
        no_transform: bool,
    },
    /// Stop and delete a connector and its checkpoint (its dead letters stay).
    Delete { id: String },
}

pub(crate) fn run(args: &ConnectorArgs) -> anyhow::Result<()> {
    let url = match &args.server {
        Some(url) => url.clone(),
        None => match std::env::var("STRATA_SERVER") {
            Ok(url) if !url.is_empty() => url,
            _ => usage_bail!("say which server: --server URL (or STRATA_SERVER=URL)"),
        },
    };
    let api = Api::new(&url, "/connectors")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(&api, &args.command))
}

async fn execute(api: &Api, command: &ConnectorCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        ConnectorCommand::List { json } => {
            let listed = api.call(reqwest::Method::GET, "", None).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
            } else {
                write_table(&mut out, listed.as_array().map_or(&[][..], Vec::as_slice))?;
            }
        }
        ConnectorCommand::Create {
            definition,
            file,
            transform,
        } => {
            let text = match (definition, file) {
                (Some(text), _) => text.clone(),
                (None, Some(path)) if path.as_os_str() == "-" => {
                    std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
                }
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                (None, None) => {
                    usage_bail!("give the definition: --definition JSON or --file PATH")
                }
            };
            let mut body: Value = match serde_json::from_str(&text) {
                Ok(body) => body,
                Err(error) => usage_bail!("the definition is not JSON: {error}"),
            };
            if let Some(path) = transform {
                let Some(object) = body.as_object_mut() else {
                    usage_bail!("the definition is not a JSON object");
                };
                object.insert("transform".into(), Value::String(read_transform(path)?));
            }
            let created = api.call(reqwest::Method::POST, "", Some(body)).await?;
            writeln!(
                out,
                "created connector {} ({})",
                created["id"].as_str().unwrap_or("?"),
                created["state"].as_str().unwrap_or("?")
            )?;
        }
        ConnectorCommand::Show { id } => {
            let shown = api.call(reqwest::Method::GET, &path(id), None).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        }
        ConnectorCommand::Start { id } => {
            api.call(reqwest::Method::POST, &format!("{}/start", path(id)), None)
                .await?;
            writeln!(out, "started connector {id}")?;
        }
        ConnectorCommand::Stop { id } => {
            api.call(reqwest::Method::POST, &format!("{}/stop", path(id)), None)
                .await?;
            writeln!(out, "stopped connector {id}")?;
        }
        ConnectorCommand::Reset { id, from } => {
            let place = match from.as_str() {
                "start" | "end" => Value::String(from.clone()),
                number => match number.parse::<u64>() {
                    Ok(after) => serde_json::json!({ "after": after }),
                    Err(_) => usage_bail!("--from takes start, end or a number, not {from:?}"),
                },
            };
            api.call(
                reqwest::Method::POST,
                &format!("{}/reset", path(id)),
                Some(serde_json::json!({ "from": place })),
            )
            .await?;
            writeln!(out, "reset connector {id} to {from}")?;
        }
        ConnectorCommand::Update {
            id,
            settings,
            transform,
            no_transform,
        } => {
            let settings: Option<Value> = match settings.as_deref().map(serde_json::from_str) {
                None => None,
                Some(Ok(body)) => Some(body),
                Some(Err(error)) => usage_bail!("--settings is not JSON: {error}"),
            };
            let transform = match (transform, no_transform) {
                (Some(path), _) => Some(Value::String(read_transform(path)?)),
                (None, true) => Some(Value::Null),
                (None, false) => None,
            };
            if let Some(transform) = transform {
                api.call(
                    reqwest::Method::PUT,
                    &format!("{}/transform", path(id)),
                    Some(serde_json::json!({ "transform": transform })),
                )
                .await?;
            }
            if let Some(body) = settings {
                api.call(
                    reqwest::Method::PUT,
                    &format!("{}/settings", path(id)),
                    Some(body),
                )
                .await?;
            }
            writeln!(out, "updated connector {id}")?;
        }
        ConnectorCommand::Delete { id } => {
            api.call(reqwest::Method::DELETE, &path(id), None).await?;
            writeln!(out, "deleted connector {id}")?;
        }
    }
    Ok(())
}

/// A transform's JavaScript source from `path`.
fn read_transform(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `/{id}`, with the characters a path segment cannot hold escaped (ids are ASCII
/// letters, digits and `-_.`, so a bad id reaches the server and is refused there).
fn path(id: &str) -> String {
    let mut escaped = String::from("/");
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

fn write_table(out: &mut impl std::io::Write, connectors: &[Value]) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<24} {:<10} {:<9} {:>12} {:>10} {:>9} {:>10} {:>8} {:>8}  LAST ERROR",
        "ID", "SINK", "STATE", "POSITION", "LAG EVENTS", "LAG S", "PUBLISHED", "DEAD", "ERRORS"
    )?;
    let number = |value: &Value| value.as_u64().map_or("-".to_owned(), |n| n.to_string());
    for connector in connectors {
        let counters = &connector["counters"];
        let state = match (connector["state"].as_str(), connector["enabled"].as_bool()) {
            (Some(state), _) => state.to_owned(),
            (None, _) => "?".to_owned(),
        };
        writeln!(
            out,
            "{:<24} {:<10} {:<9} {:>12} {:>10} {:>9.1} {:>10} {:>8} {:>8}  {}",
            connector["id"].as_str().unwrap_or("?"),
            connector["sink"].as_str().unwrap_or("?"),
            state,
            number(&connector["position"]),
            number(&connector["lag_events"]),
            connector["lag_seconds"].as_f64().unwrap_or(0.0),
            number(&counters["published"]),
            number(&counters["dead_lettered"]),
            number(&counters["failures"]),
            connector["last_error"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The server's `/connectors` over HTTP.
/// The JSON routes under one path of a server's HTTP API.
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
}

impl Api {
    /// The routes under `base_path` of the server `url` names (`kurrentdb://`,
    /// `http(s)://`; credentials from the URL or `STRATA_USER`/`STRATA_PASSWORD`).
    pub(crate) fn new(url: &str, base_path: &str) -> anyhow::Result<Self> {
        let target = Target::parse(url)?;
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if target.https {
            builder = builder.use_preconfigured_tls(tls_config(target.ca_file.as_deref())?);
        }
        Ok(Self {
            client: builder.build().context("cannot set up the HTTP client")?,
            base: format!(
                "{}://{}{base_path}",
                if target.https { "https" } else { "http" },
                target.authority
            ),
            credentials: target.credentials.or_else(credentials_from_env),
        })
    }

    /// Sends one request; a refusal becomes an error carrying the server's `detail`.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = answer.status();
        let text = answer.text().await.context("cannot read the answer")?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("the server refused ({status}): {detail}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }
}

/// Where the HTTP API of a server named by `--server` is.
#[derive(Debug, PartialEq)]
struct Target {
    https: bool,
    /// `host:port`.
    authority: String,
    credentials: Option<(String, String)>,
    ca_file: Option<PathBuf>,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            usage_bail!("--server must be a kurrentdb:// or http(s):// URL, not {url:?}")
        };
        let (authority, query) = match rest.split_once('?') {
            Some((authority, query)) => (authority, query),
            None => (rest, ""),
        };
        let authority = authority.trim_end_matches('/');
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => {
                let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
                (Some((user.to_owned(), password.to_owned())), hosts)
            }
            None => (None, authority),
        };
        let host = hosts.split(',').next().unwrap_or("");
        if host.is_empty() || host.contains('/') {
            usage_bail!("--server names no host:port: {url:?}");
        }
        let options: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_ascii_lowercase(), value.to_owned())
            })
            .collect();
        let option = |name: &str| {
            options
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            "kurrentdb" | "kdb" | "esdb" | "eventstore" | "kurrent" => {
                !option("tls").is_some_and(|tls| tls.eq_ignore_ascii_case("false"))
            }
            other => usage_bail!("--server scheme {other:?} is not kurrentdb, http or https"),
        };
        let authority = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:2113")
        };
        Ok(Self {
            https,
            authority,
            credentials,
            ca_file: option("tlscafile").map(PathBuf::from),
        })
    }
}

/// TLS trusting `ca_file` (a PEM file) — the only roots: a Strata server's certificate is
/// its own (`serve --dev` prints the file to pass).
fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let Some(ca_file) = ca_file else {
        usage_bail!("a TLS server needs its CA: add tlsCaFile=PATH to --server (or tls=false)")
    };
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("cannot read the CA file {}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate
            .with_context(|| format!("{} is not a PEM certificate", ca_file.display()))?;
        roots
            .add(certificate)
            .with_context(|| format!("cannot trust {}", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_names_the_http_api() {
        let target =
            Target::parse("kurrentdb://admin:changeit@localhost:2113,other:2113?tlsCaFile=ca.pem")
                .unwrap();
        assert_eq!(
            target,
            Target {
                https: true,
                authority: "localhost:2113".into(),
                credentials: Some(("admin".into(), "changeit".into())),
                ca_file: Some("ca.pem".into()),
            }
        );
        let plain = Target::parse("kdb://127.0.0.1:4000?tls=false").unwrap();
        assert!(!plain.https);
        assert_eq!(plain.authority, "127.0.0.1:4000");
        assert_eq!(plain.credentials, None);
        let direct = Target::parse("http://127.0.0.1:5000/").unwrap();
        assert!(!direct.https);
        assert_eq!(direct.authority, "127.0.0.1:5000");
        assert!(Target::parse("ftp://x:1").is_err());
        assert!(Target::parse("localhost:2113").is_err());
    }

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(path("orders-to_nats.1"), "/orders-to_nats.1");
        assert_eq!(path("a/b c"), "/a%2Fb%20c");
    }
}
