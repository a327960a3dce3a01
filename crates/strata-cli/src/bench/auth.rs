//! What authentication costs per call: one argon2id verification (a login the server has
//! not seen, or after a password change), and a verification answered by the cache (every
//! later call of the same user).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_auth::{Credentials, Security, SecurityOptions};
use strata_core::EventStore;
use strata_engine::{Config, Store};

/// argon2id verifications timed; each takes milliseconds.
const ARGON2_VERIFICATIONS: u32 = 10;
/// Cached verifications timed.
const CACHED_VERIFICATIONS: u32 = 20_000;

pub(crate) struct AuthCost {
    pub(crate) argon2id_verify: Duration,
    pub(crate) cached_verify: Duration,
}

/// Measures on a small store of its own beside `dir` (`<dir>-auth`, removed afterwards), so
/// the bench's store keeps only the workload's events.
pub(crate) async fn run(dir: &Path) -> anyhow::Result<AuthCost> {
    let phc = strata_auth::bench_argon2id_hash("changeit");
    let started = Instant::now();
    for _ in 0..ARGON2_VERIFICATIONS {
        anyhow::ensure!(
            strata_auth::bench_argon2id_verify("changeit", &phc),
            "argon2id rejected its own hash"
        );
    }
    let argon2id_verify = started.elapsed() / ARGON2_VERIFICATIONS;

    let mut auth_dir = dir.as_os_str().to_owned();
    auth_dir.push("-auth");
    let auth_dir = std::path::PathBuf::from(auth_dir);
    let store = Store::open(&auth_dir, Config::default())
        .with_context(|| format!("cannot open {}", auth_dir.display()))?;
    let shared: Arc<dyn EventStore> = store.clone();
    let cached_verify = async {
        let security = Security::enabled(shared, SecurityOptions::default()).await?;
        let credentials = Credentials::new("admin", "changeit");
        security
            .authenticate_credentials(&credentials, None)
            .await?;
        let started = Instant::now();
        for _ in 0..CACHED_VERIFICATIONS {
            security
                .authenticate_credentials(&credentials, None)
                .await?;
        }
        anyhow::Ok(started.elapsed() / CACHED_VERIFICATIONS)
    }
    .await;
    store.close();
    drop(store);
    std::fs::remove_dir_all(&auth_dir)
        .with_context(|| format!("cannot remove {}", auth_dir.display()))?;
    Ok(AuthCost {
        argon2id_verify,
        cached_verify: cached_verify?,
    })
}
