//! [`UsersAdmin`]: the `Users` service from the command line (`strata user ...`).

use tonic::Request;
use tonic::transport::Channel;

use super::ClientError;
use super::admin::AdminConnection;
use crate::proto::event_store::client::users::users_client::UsersClient;
use crate::proto::event_store::client::users::{
    ChangePasswordReq, CreateReq, DeleteReq, DetailsReq, DisableReq, EnableReq, ResetPasswordReq,
    UpdateReq, change_password_req, create_req, delete_req, details_req, disable_req, enable_req,
    reset_password_req, update_req,
};

/// One user as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub login_name: String,
    pub full_name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// .NET ticks since the Unix epoch; 0 when the server sent none.
    pub last_updated_ticks: i64,
}

/// Manages users on a server, as the user named in the connection string (or given).
pub struct UsersAdmin {
    users: UsersClient<Channel>,
    connection: AdminConnection,
}

impl UsersAdmin {
    /// Connects to `url` (`kurrentdb://USER:PASSWORD@HOST:PORT?tlsCaFile=CA.pem`, or
    /// `?tls=false`); `credentials` replace those of the URL when given.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a bad string or unreadable CA file,
    /// [`ClientError::Connect`] when no connection can be made.
    pub async fn connect(
        url: &str,
        credentials: Option<(String, String)>,
    ) -> Result<UsersAdmin, ClientError> {
        let connection = AdminConnection::connect(url, credentials).await?;
        Ok(UsersAdmin {
            users: UsersClient::new(connection.channel.clone()),
            connection,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        self.connection.request(message)
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn create(
        &self,
        login: &str,
        full_name: &str,
        groups: &[String],
        password: &str,
    ) -> Result<(), ClientError> {
        let options = create_req::Options {
            login_name: login.to_owned(),
            password: password.to_owned(),
            full_name: full_name.to_owned(),
            groups: groups.to_vec(),
        };
        let request = self.request(CreateReq {
            options: Some(options),
        });
        self.users
            .clone()
            .create(request)
            .await
            .map_err(|status| ClientError::rpc("Users.Create", status))?;
        Ok(())
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn update(
        &self,
        login: &str,
        full_name: &str,
        groups: &[String],
    ) -> Result<(), ClientError> {
        let options = update_req::Options {
            login_name: login.to_owned(),
            password: String::new(),
            full_name: full_name.to_owned(),
            groups: groups.to_vec(),
        };
        let request = self.request(UpdateReq {
            options: Some(options),
        });
        self.users
            .clone()
            .update(request)
            .await
            .map_err(|status| ClientError::rpc("Users.Update", status))?;
        Ok(())
    }

    /// One user (`Some(login)`) or every user (`None`).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn details(&self, login: Option<&str>) -> Result<Vec<UserInfo>, ClientError> {
        let request = self.request(DetailsReq {
            options: Some(details_req::Options {
                login_name: login.unwrap_or_default().to_owned(),
            }),
        });
        let rpc = |status| ClientError::rpc("Users.Details", status);
        let mut answers = self
            .users
            .clone()
            .details(request)
            .await
            .map_err(rpc)?
            .into_inner();
        let mut users = Vec::new();
        while let Some(answer) = answers.message().await.map_err(rpc)? {
            if let Some(user) = answer.user_details {
                users.push(UserInfo {
                    login_name: user.login_name,
                    full_name: user.full_name,
                    groups: user.groups,
                    disabled: user.disabled,
                    last_updated_ticks: user
                        .last_updated
                        .map_or(0, |updated| updated.ticks_since_epoch),
                });
            }
        }
        Ok(users)
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn change_password(
        &self,
        login: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), ClientError> {
        let request = self.request(ChangePasswordReq {
            options: Some(change_password_req::Options {
                login_name: login.to_owned(),
                current_password: current_password.to_owned(),
                new_password: new_password.to_owned(),
            }),
        });
        self.users
            .clone()
            .change_password(request)
            .await
            .map_err(|status| ClientError::rpc("Users.ChangePassword", status))?;
        Ok(())
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn reset_password(&self, login: &str, new_password: &str) -> Result<(), ClientError> {
        let request = self.request(ResetPasswordReq {
            options: Some(reset_password_req::Options {
                login_name: login.to_owned(),
                new_password: new_password.to_owned(),
            }),
        });
        self.users
            .clone()
            .reset_password(request)
            .await
            .map_err(|status| ClientError::rpc("Users.ResetPassword", status))?;
        Ok(())
    }

    /// Disables (`true`) or enables (`false`) a user.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn set_disabled(&self, login: &str, disabled: bool) -> Result<(), ClientError> {
        let login_name = login.to_owned();
        let outcome = if disabled {
            let request = self.request(DisableReq {
                options: Some(disable_req::Options { login_name }),
            });
            self.users.clone().disable(request).await.map(|_| ())
        } else {
            let request = self.request(EnableReq {
                options: Some(enable_req::Options { login_name }),
            });
            self.users.clone().enable(request).await.map(|_| ())
        };
        outcome.map_err(|status| ClientError::rpc("Users.Disable/Enable", status))
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn delete(&self, login: &str) -> Result<(), ClientError> {
        let request = self.request(DeleteReq {
            options: Some(delete_req::Options {
                login_name: login.to_owned(),
            }),
        });
        self.users
            .clone()
            .delete(request)
            .await
            .map_err(|status| ClientError::rpc("Users.Delete", status))?;
        Ok(())
    }
}
