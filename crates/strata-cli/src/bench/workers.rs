//! Concurrent workers that share a numbered list of operations and time each one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

/// Runs operations `0..operations` on `tasks` concurrent tasks, each task taking the next
/// unclaimed number, and returns every operation's latency (in no particular order).
/// The first failure stops all tasks and is returned.
pub(crate) async fn run<F, Fut>(
    tasks: u64,
    operations: u64,
    operation: F,
) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let operation = Arc::new(operation);
    let next = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..tasks.min(operations.max(1)) {
        let operation = Arc::clone(&operation);
        let next = Arc::clone(&next);
        set.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= operations {
                    return anyhow::Ok(latencies);
                }
                let started = Instant::now();
                operation(index).await?;
                latencies.push(started.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(usize::try_from(operations).unwrap_or(0));
    while let Some(joined) = set.join_next().await {
        match joined.context("a bench task panicked") {
            Ok(Ok(task_latencies)) => latencies.extend(task_latencies),
            Ok(Err(error)) | Err(error) => {
                set.abort_all();
                return Err(error);
            }
        }
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn every_operation_runs_exactly_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let latencies = run(7, 1_000, move |index| {
            let recorder = Arc::clone(&recorder);
            async move {
                recorder.lock().expect("not poisoned").push(index);
                Ok(())
            }
        })
        .await
        .expect("all succeed");
        assert_eq!(latencies.len(), 1_000);
        let mut indexes = seen.lock().expect("not poisoned").clone();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..1_000).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn the_first_failure_is_returned() {
        let outcome = run(4, 100, |index| async move {
            anyhow::ensure!(index != 42, "operation 42 failed");
            Ok(())
        })
        .await;
        let error = outcome.expect_err("one operation fails");
        assert!(error.to_string().contains("42"));
    }
}
