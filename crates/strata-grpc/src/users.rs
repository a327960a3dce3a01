//! The `Users` service: user management over `strata-auth`, with the reference server's
//! permissions (admins manage users; a user may read itself and change its own password)
//! and statuses (`NOT_FOUND` user-not-found, `FAILED_PRECONDITION` user-conflict).

use futures::stream::{self, BoxStream, StreamExt as _};
use strata_auth::Action;
use tonic::{Request, Response, Status};

use crate::access::{Access, auth_status};
use crate::proto::event_store::client::users::details_resp::UserDetails;
use crate::proto::event_store::client::users::details_resp::user_details::DateTime;
use crate::proto::event_store::client::users::users_server::Users;
use crate::proto::event_store::client::users::{
    ChangePasswordReq, ChangePasswordResp, CreateReq, CreateResp, DeleteReq, DeleteResp,
    DetailsReq, DetailsResp, DisableReq, DisableResp, EnableReq, EnableResp, ResetPasswordReq,
    ResetPasswordResp, UpdateReq, UpdateResp,
};

pub(crate) struct UsersService {
    pub(crate) access: Access,
}

fn missing_options() -> Status {
    Status::invalid_argument("the request has no options")
}

fn details(user: strata_auth::UserDetails) -> DetailsResp {
    DetailsResp {
        user_details: Some(UserDetails {
            login_name: user.login_name,
            full_name: user.full_name,
            groups: user.groups,
            last_updated: Some(DateTime {
                ticks_since_epoch: user.last_updated.unix_ticks(),
            }),
            disabled: user.disabled,
        }),
    }
}

#[tonic::async_trait]
impl Users for UsersService {
    type DetailsStream = BoxStream<'static, Result<DetailsResp, Status>>;

    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .create_user(
                &options.login_name,
                &options.full_name,
                &options.groups,
                &options.password,
            )
            .await
            .map_err(auth_status)?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let security = self.access.security();
        security
            .update_user(&options.login_name, &options.full_name, &options.groups)
            .await
            .map_err(auth_status)?;
        if !options.password.is_empty() {
            security
                .reset_password(&options.login_name, &options.password)
                .await
                .map_err(auth_status)?;
        }
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .delete_user(&options.login_name)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(DeleteResp {}))
    }

    async fn disable(&self, request: Request<DisableReq>) -> Result<Response<DisableResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .set_user_disabled(&options.login_name, true)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(DisableResp {}))
    }

    async fn enable(&self, request: Request<EnableReq>) -> Result<Response<EnableResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .set_user_disabled(&options.login_name, false)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(EnableResp {}))
    }

    async fn details(
        &self,
        request: Request<DetailsReq>,
    ) -> Result<Response<Self::DetailsStream>, Status> {
        let login = request
            .get_ref()
            .options
            .as_ref()
            .map(|options| options.login_name.trim().to_owned())
            .unwrap_or_default();
        let security = self.access.security();
        let users = if login.is_empty() {
            self.access.allow(&request, &Action::ManageUsers).await?;
            security.list_users().await.map_err(auth_status)?
        } else {
            self.access
                .allow(&request, &Action::ReadUser(login.clone()))
                .await?;
            vec![security.user_details(&login).await.map_err(auth_status)?]
        };
        let answers = stream::iter(users.into_iter().map(|user| Ok(details(user))));
        Ok(Response::new(answers.boxed()))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordReq>,
    ) -> Result<Response<ChangePasswordResp>, Status> {
        let login = request
            .get_ref()
            .options
            .as_ref()
            .map(|options| options.login_name.clone())
            .unwrap_or_default();
        self.access
            .allow(&request, &Action::ChangePassword(login))
            .await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .change_password(
                &options.login_name,
                &options.current_password,
                &options.new_password,
            )
            .await
            .map_err(auth_status)?;
        Ok(Response::new(ChangePasswordResp {}))
    }

    async fn reset_password(
        &self,
        request: Request<ResetPasswordReq>,
    ) -> Result<Response<ResetPasswordResp>, Status> {
        self.access.allow(&request, &Action::ManageUsers).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.access
            .security()
            .reset_password(&options.login_name, &options.new_password)
            .await
            .map_err(auth_status)?;
        Ok(Response::new(ResetPasswordResp {}))
    }
}
