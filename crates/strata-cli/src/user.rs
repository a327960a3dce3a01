//! `strata user`: manage the users of a running server through its Users service.

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_grpc::client::{UserInfo, UsersAdmin};

use crate::data::{credentials_from_env, usage_bail};

#[derive(Args)]
pub(crate) struct UserArgs {
    /// The server, e.g. kurrentdb://admin:changeit@localhost:2113?tlsCaFile=ca.pem.
    /// Default: STRATA_SERVER. Credentials not in the URL come from STRATA_USER and
    /// STRATA_PASSWORD.
    #[arg(long, value_name = "URL", global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        login: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "")]
        full_name: String,
        /// A group (role) of the user; repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List every user.
    List,
    /// Show one user.
    Show { login: String },
    /// Set a password: with --current, change it as the user; without, reset it (admins).
    Passwd {
        login: String,
        #[arg(long)]
        password: String,
        #[arg(long, value_name = "PASSWORD")]
        current: Option<String>,
    },
    /// Disable a user: it can no longer log in.
    Disable { login: String },
    /// Enable a disabled user.
    Enable { login: String },
    /// Delete a user.
    Delete { login: String },
}

pub(crate) fn run(args: &UserArgs) -> anyhow::Result<()> {
    let url = match &args.server {
        Some(url) => url.clone(),
        None => match std::env::var("STRATA_SERVER") {
            Ok(url) if !url.is_empty() => url,
            _ => usage_bail!("say which server: --server URL (or STRATA_SERVER=URL)"),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let admin = UsersAdmin::connect(&url, url_credentials_or_env(&url))
            .await
            .context("cannot reach the server")?;
        execute(&admin, &args.command).await
    })
}

/// The URL's own credentials win; else the environment's.
fn url_credentials_or_env(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        None
    } else {
        credentials_from_env()
    }
}

async fn execute(admin: &UsersAdmin, command: &UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            login,
            password,
            full_name,
            groups,
        } => {
            admin.create(login, full_name, groups, password).await?;
            println!("created user {login}");
        }
        UserCommand::List => {
            for user in admin.details(None).await? {
                print_user(&user);
            }
        }
        UserCommand::Show { login } => {
            for user in admin.details(Some(login)).await? {
                print_user(&user);
            }
        }
        UserCommand::Passwd {
            login,
            password,
            current,
        } => {
            match current {
                Some(current) => admin.change_password(login, current, password).await?,
                None => admin.reset_password(login, password).await?,
            }
            println!("password of {login} set");
        }
        UserCommand::Disable { login } => {
            admin.set_disabled(login, true).await?;
            println!("disabled user {login}");
        }
        UserCommand::Enable { login } => {
            admin.set_disabled(login, false).await?;
            println!("enabled user {login}");
        }
        UserCommand::Delete { login } => {
            admin.delete(login).await?;
            println!("deleted user {login}");
        }
    }
    Ok(())
}

fn print_user(user: &UserInfo) {
    let state = if user.disabled { "disabled" } else { "enabled" };
    println!(
        "{}\t{}\t[{}]\t{state}",
        user.login_name,
        user.full_name,
        user.groups.join(", ")
    );
}
