//! Automatic scavenging: a schedule (every N seconds/minutes/hours/days, or a small
//! cron-like `minute hour * * *` in UTC) and a rule to skip runs that cannot remove
//! anything, running through the same [`ScavengeJobs`] as a manual start.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::OperationsError;
use crate::jobs::{JobState, ScavengeJobs, ScavengeRequest, StartOutcome, Trigger};

/// Shortest interval of an `every` schedule.
pub const SCHEDULE_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// When automatic runs start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every interval, the first one interval after the server starts.
    Every(Duration),
    /// At the minutes and hours (UTC) that match, like cron's first two fields.
    Daily { minutes: Vec<u32>, hours: Vec<u32> },
}

impl Schedule {
    /// Reads `every 6h` (units `s`, `m`, `h`, `d`) or `M H * * *`, where each of `M` and
    /// `H` is `*`, a number, `*/step` or a comma list of numbers.
    ///
    /// # Errors
    /// [`OperationsError::InvalidArgument`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, OperationsError> {
        let text = text.trim();
        if let Some(interval) = text.strip_prefix("every") {
            return parse_interval(interval.trim()).map(Schedule::Every);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        let invalid = |reason: String| {
            OperationsError::InvalidArgument(format!(
                "scavenge schedule {text:?}: {reason}; write `every 6h` (s, m, h, d) or \
                 `MINUTE HOUR * * *` (UTC)"
            ))
        };
        if fields.len() != 5 {
            return Err(invalid(format!("{} fields, not 5", fields.len())));
        }
        if fields[2..].iter().any(|field| *field != "*") {
            return Err(invalid(
                "only the minute and hour fields may be set (day, month and weekday are `*`)"
                    .into(),
            ));
        }
        let minutes = parse_field(fields[0], 60).map_err(&invalid)?;
        let hours = parse_field(fields[1], 24).map_err(&invalid)?;
        Ok(Schedule::Daily { minutes, hours })
    }

    /// How long from `now` until the next run.
    pub fn wait_from(&self, now: SystemTime) -> Duration {
        match self {
            Schedule::Every(interval) => *interval,
            Schedule::Daily { minutes, hours } => {
                let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
                let seconds = since_epoch.as_secs();
                let this_minute = seconds - seconds % 60;
                // The next matching minute after the current one, within a day.
                for step in 1..=24 * 60 {
                    let candidate = this_minute + step * 60;
                    let minute = (candidate / 60 % 60) as u32;
                    let hour = (candidate / 3600 % 24) as u32;
                    if minutes.contains(&minute) && hours.contains(&hour) {
                        return Duration::from_secs(candidate).saturating_sub(since_epoch);
                    }
                }
                Duration::from_secs(24 * 3600)
            }
        }
    }
}

fn parse_interval(text: &str) -> Result<Duration, OperationsError> {
    let invalid = || {
        OperationsError::InvalidArgument(format!(
            "scavenge schedule `every {text}`: write a whole number and a unit, e.g. \
             `every 6h` (s, m, h, d)"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit_seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let interval = Duration::from_secs(number.saturating_mul(unit_seconds));
    if interval < SCHEDULE_INTERVAL_MIN {
        return Err(OperationsError::InvalidArgument(format!(
            "scavenge schedule `every {text}`: the interval must be at least 1s"
        )));
    }
    Ok(interval)
}

/// One cron field over `0..limit`.
fn parse_field(field: &str, limit: u32) -> Result<Vec<u32>, String> {
    if field == "*" {
        return Ok((0..limit).collect());
    }
    if let Some(step) = field.strip_prefix("*/") {
        let step: u32 = step
            .parse()
            .map_err(|_| format!("{field:?} is not */STEP"))?;
        if step == 0 || step >= limit {
            return Err(format!("step {step} must be between 1 and {}", limit - 1));
        }
        return Ok((0..limit).step_by(step as usize).collect());
    }
    let mut values = Vec::new();
    for part in field.split(',') {
        let value: u32 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a number"))?;
        if value >= limit {
            return Err(format!("{value} is out of range 0–{}", limit - 1));
        }
        values.push(value);
    }
    Ok(values)
}

/// Automatic scavenging, from the config file's `[scavenge]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoScavenge {
    pub schedule: Schedule,
    /// Skip a run when the last one completed, removed nothing, and the log has not grown
    /// since (time alone can still expire `$maxAge` events: they wait for the next write).
    pub skip_when_idle: bool,
    pub throttle_percent: u8,
    /// Skip a run when the store estimates it would remove fewer bytes than this
    /// ([`strata_core::Maintenance::reclaimable_bytes_estimate`]); 0: no threshold.
    pub min_reclaimable_bytes: u64,
}

/// What automatic scavenging has done, for the status listing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AutoStatus {
    pub schedule: String,
    pub next_run_unix_ms: Option<u64>,
    pub runs_started: u64,
    pub runs_skipped: u64,
    /// Why the last turn started a run or not.
    pub last_decision: Option<String>,
    /// The store's last estimate of reclaimable bytes (with a threshold set).
    pub last_reclaimable_estimate: Option<u64>,
}

impl ScavengeJobs {
    /// Runs `auto` until the returned task is aborted (or the runtime ends).
    pub fn spawn_automatic(&self, auto: AutoScavenge) -> tokio::task::JoinHandle<()> {
        let jobs = self.clone();
        jobs.set_auto_status(|status| status.schedule = format!("{:?}", auto.schedule));
        tokio::spawn(async move {
            loop {
                let wait = auto.schedule.wait_from(SystemTime::now());
                let next = SystemTime::now() + wait;
                jobs.set_auto_status(|status| {
                    status.next_run_unix_ms = next
                        .duration_since(UNIX_EPOCH)
                        .ok()
                        .and_then(|since| since.as_millis().try_into().ok());
                });
                tokio::time::sleep(wait).await;
                let decision = jobs.automatic_turn(&auto).await;
                tracing::info!(%decision, "automatic scavenge");
            }
        })
    }

    /// One turn of automatic scavenging: starts a run or says why not.
    async fn automatic_turn(&self, auto: &AutoScavenge) -> String {
        if let Some(reason) = self.skip_reason(auto).await {
            self.set_auto_status(|status| {
                status.runs_skipped += 1;
                status.last_decision = Some(reason.clone());
            });
            return reason;
        }
        let request = ScavengeRequest {
            throttle_percent: auto.throttle_percent,
            trigger: Trigger::Automatic,
            ..ScavengeRequest::default()
        };
        let decision = match self.start(request) {
            Ok(StartOutcome::Started(id)) => {
                self.set_auto_status(|status| status.runs_started += 1);
                format!("started scavenge {id}")
            }
            Ok(StartOutcome::InProgress(id)) => {
                self.set_auto_status(|status| status.runs_skipped += 1);
                format!("skipped: scavenge {id} is under way")
            }
            Err(error) => {
                self.set_auto_status(|status| status.runs_skipped += 1);
                format!("skipped: {error}")
            }
        };
        self.set_auto_status(|status| status.last_decision = Some(decision.clone()));
        decision
    }

    async fn skip_reason(&self, auto: &AutoScavenge) -> Option<String> {
        if let Some(reason) = self.idle_reason(auto).await {
            return Some(reason);
        }
        self.threshold_reason(auto).await
    }

    /// With a threshold: skips when the store's estimate is under it. A store that cannot
    /// estimate (or an estimate that fails) does not skip the run.
    async fn threshold_reason(&self, auto: &AutoScavenge) -> Option<String> {
        if auto.min_reclaimable_bytes == 0 {
            return None;
        }
        let maintenance = self.maintenance()?;
        let estimate =
            tokio::task::spawn_blocking(move || maintenance.reclaimable_bytes_estimate()).await;
        match estimate {
            Ok(Ok(bytes)) => {
                self.set_auto_status(|status| status.last_reclaimable_estimate = Some(bytes));
                (bytes < auto.min_reclaimable_bytes).then(|| {
                    format!(
                        "skipped: about {bytes} bytes reclaimable, under the threshold of {} \
                         (min_reclaimable_bytes)",
                        auto.min_reclaimable_bytes
                    )
                })
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "no estimate of reclaimable bytes; scavenging anyway");
                None
            }
            Err(join) => {
                tracing::warn!(%join, "no estimate of reclaimable bytes; scavenging anyway");
                None
            }
        }
    }

    async fn idle_reason(&self, auto: &AutoScavenge) -> Option<String> {
        if !auto.skip_when_idle {
            return None;
        }
        let last = self.history().into_iter().next()?;
        let removed_nothing =
            last.state == JobState::Completed && last.progress.events_removed == 0;
        if !removed_nothing {
            return None;
        }
        let log_end = self
            .store()
            .last_position()
            .await
            .ok()
            .flatten()
            .map(|position| position.0);
        (log_end == last.log_end_at_finish).then(|| {
            format!(
                "skipped: scavenge {} removed nothing and nothing was written since",
                last.id
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_daily_schedules_parse() {
        assert_eq!(
            Schedule::parse("every 6h").unwrap(),
            Schedule::Every(Duration::from_secs(6 * 3600))
        );
        assert_eq!(
            Schedule::parse("every 30m").unwrap(),
            Schedule::Every(Duration::from_secs(1800))
        );
        assert_eq!(
            Schedule::parse("30 3 * * *").unwrap(),
            Schedule::Daily {
                minutes: vec![30],
                hours: vec![3]
            }
        );
        match Schedule::parse("*/15 * * * *").unwrap() {
            Schedule::Daily { minutes, hours } => {
                assert_eq!(minutes, vec![0, 15, 30, 45]);
                assert_eq!(hours.len(), 24);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for bad in [
            "every",
            "every 0s",
            "every 5 weeks",
            "every h",
            "61 * * * *",
            "0 24 * * *",
            "0 3 1 * *",
            "0 3 * *",
            "*/0 * * * *",
        ] {
            let error = Schedule::parse(bad).unwrap_err().to_string();
            assert!(error.contains("scavenge schedule"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_daily_schedule_waits_for_the_next_matching_minute() {
        let schedule = Schedule::parse("30 3 * * *").unwrap();
        // 1970-01-01 03:29:10 UTC: 50 s to 03:30.
        let now = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 29 * 60 + 10);
        assert_eq!(schedule.wait_from(now), Duration::from_secs(50));
        // Just after 03:30: the next day's.
        let now = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 30 * 60 + 1);
        assert_eq!(schedule.wait_from(now), Duration::from_secs(24 * 3600 - 1));
    }
}
