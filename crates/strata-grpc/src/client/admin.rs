//! The connection the management clients ([`super::UsersAdmin`], [`super::ProjectionsAdmin`])
//! share: a channel to the server, and the caller's credentials sent with every call.

use std::time::Duration;

use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::ClientError;
use super::connection_string::{parse_secure, tls_config};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to a server, and the `authorization` header of its calls.
pub(super) struct AdminConnection {
    pub(super) channel: Channel,
    authorization: Option<MetadataValue<Ascii>>,
}

impl AdminConnection {
    /// Connects to `url` (`kurrentdb://USER:PASSWORD@HOST:PORT?tlsCaFile=CA.pem`, or
    /// `?tls=false`); `credentials` replace those of the URL when given.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a bad string or unreadable CA file,
    /// [`ClientError::Connect`] when no connection can be made.
    pub(super) async fn connect(
        url: &str,
        credentials: Option<(String, String)>,
    ) -> Result<AdminConnection, ClientError> {
        let target = parse_secure(url)?;
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(target.uri.clone())
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        if target.uri.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls_config(&target).map_err(invalid)?)
                .map_err(|error| invalid(error.to_string()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                uri: target.uri.clone(),
                source,
            })?;
        let authorization = credentials
            .or(target.credentials)
            .map(|(user, password)| {
                strata_auth::Credentials::new(user, password)
                    .to_header()
                    .parse()
                    .map_err(|_| invalid("the credentials cannot be sent as a header".to_owned()))
            })
            .transpose()?;
        Ok(AdminConnection {
            channel,
            authorization,
        })
    }

    /// `message` as a call carrying the credentials.
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}
