//! The bench's figures: one flat JSON object, or a table for people.

use std::path::Path;

use serde_json::json;

use super::append_single::SingleAppends;
use super::baseline::Baseline;
use super::latency::micros;
use super::machine::Machine;
use super::memory::MemoryUse;
use super::read_stream::StreamReads;
use super::reopen::Reopen;
use super::throughput::Throughput;

/// The workload as run, echoed next to the figures.
pub(crate) struct WorkloadShape {
    pub(crate) durability: &'static str,
    pub(crate) event_bytes: u64,
    pub(crate) streams: u64,
    pub(crate) batch_events: u64,
    pub(crate) single_tasks: u64,
}

pub(crate) struct BenchReport {
    pub(crate) shape: WorkloadShape,
    pub(crate) machine: Machine,
    pub(crate) baseline: Baseline,
    pub(crate) batched: Throughput,
    /// Log bytes the batched phase wrote.
    pub(crate) batched_bytes: u64,
    pub(crate) single: SingleAppends,
    pub(crate) fixture: Throughput,
    pub(crate) read_all: Throughput,
    pub(crate) read_stream: StreamReads,
    pub(crate) memory: MemoryUse,
    pub(crate) reopen: Reopen,
    pub(crate) auth: super::auth::AuthCost,
    pub(crate) events_total: u64,
}

impl BenchReport {
    fn batched_bytes_per_sec(&self) -> f64 {
        self.batched_bytes as f64 / self.batched.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Share of the disk's sequential write speed the batched appends used.
    fn batched_disk_write_ratio(&self) -> f64 {
        self.batched_bytes_per_sec() / self.baseline.disk_write_bytes_per_sec
    }

    /// Events acknowledged per fdatasync the disk can do: what group commit buys.
    fn single_events_per_fdatasync(&self) -> f64 {
        self.single.throughput.events_per_sec() / self.baseline.fdatasync_per_sec
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "durability": self.shape.durability,
            "event_bytes": self.shape.event_bytes,
            "streams": self.shape.streams,
            "events_total": self.events_total,
            "machine_cores": self.machine.cores,
            "machine_memory_bytes": self.machine.memory_bytes,
            "fdatasync_per_sec": round(self.baseline.fdatasync_per_sec),
            "disk_write_bytes_per_sec": round(self.baseline.disk_write_bytes_per_sec),
            "disk_write_baseline_bytes": self.baseline.disk_write_bytes,
            "disk_write_baseline_group_bytes": self.baseline.disk_write_group_bytes,
            "append_batched_events": self.batched.events,
            "append_batched_events_per_sec": round(self.batched.events_per_sec()),
            "append_batched_log_bytes_per_sec": round(self.batched_bytes_per_sec()),
            "append_batched_disk_write_ratio": round3(self.batched_disk_write_ratio()),
            "append_single_events": self.single.throughput.events,
            "append_single_events_per_sec": round(self.single.throughput.events_per_sec()),
            "append_single_events_per_fdatasync": round3(self.single_events_per_fdatasync()),
            "append_single_p50_us": round1(micros(self.single.latency.p50)),
            "append_single_p99_us": round1(micros(self.single.latency.p99)),
            "append_single_max_us": round1(micros(self.single.latency.max)),
            "stream_fixture_events_per_sec": round(self.fixture.events_per_sec()),
            "read_all_events": self.read_all.events,
            "read_all_events_per_sec": round(self.read_all.events_per_sec()),
            "read_stream_reads": self.read_stream.latency.samples,
            "read_stream_reads_per_sec": round(self.read_stream.throughput.events_per_sec()),
            "read_stream_p50_us": round1(micros(self.read_stream.latency.p50)),
            "read_stream_p99_us": round1(micros(self.read_stream.latency.p99)),
            "reopen_ms": round1(self.reopen.elapsed.as_secs_f64() * 1_000.0),
            "reopen_events": self.reopen.events,
            "memory_streams_total": self.memory.streams_total,
            "memory_resident_bytes": self.memory.resident_bytes,
            "auth_argon2id_verify_ms": round3(self.auth.argon2id_verify.as_secs_f64() * 1_000.0),
            "auth_cached_verify_us": round3(micros(self.auth.cached_verify)),
        })
    }

    pub(crate) fn print_table(&self, dir: &Path) {
        println!(
            "strata bench: {} events of {} bytes over {} streams, durability {}, in {}",
            group(self.events_total as f64),
            self.shape.event_bytes,
            group(self.shape.streams as f64),
            self.shape.durability,
            dir.display()
        );
        println!(
            "machine: {} cores, {} memory; {}-event batches, {} single-append tasks\n",
            self.machine.cores,
            self.machine
                .memory_bytes
                .map_or("unknown".to_owned(), gibibytes),
            group(self.shape.batch_events as f64),
            self.shape.single_tasks
        );
        let header = row(
            "metric",
            "figure".to_owned(),
            "target",
            "vs baseline".to_owned(),
        );
        for row in std::iter::once(header).chain(self.rows()) {
            let line = format!("{:<34} {:>16}  {:<14} {}", row[0], row[1], row[2], row[3]);
            println!("{}", line.trim_end());
        }
    }

    fn rows(&self) -> Vec<[String; 4]> {
        let mut rows = self.write_rows();
        rows.extend(self.read_rows());
        rows
    }

    /// The baseline and the append figures.
    fn write_rows(&self) -> Vec<[String; 4]> {
        let single_latency = &self.single.latency;
        vec![
            row(
                "fdatasync_per_sec",
                group(self.baseline.fdatasync_per_sec),
                "",
                String::new(),
            ),
            row(
                "disk_write_bytes_per_sec",
                per_sec_bytes(self.baseline.disk_write_bytes_per_sec),
                "",
                self.baseline.write_method(),
            ),
            row(
                "append_batched_events_per_sec",
                group(self.batched.events_per_sec()),
                ">= 1,500,000",
                format!(
                    "{} of log, {:.2} x disk write",
                    per_sec_bytes(self.batched_bytes_per_sec()),
                    self.batched_disk_write_ratio()
                ),
            ),
            row(
                "append_single_events_per_sec",
                group(self.single.throughput.events_per_sec()),
                ">= 250,000",
                format!(
                    "{:.1} events per fdatasync",
                    self.single_events_per_fdatasync()
                ),
            ),
            row(
                "append_single_p50_us",
                format!("{:.1}", micros(single_latency.p50)),
                "",
                String::new(),
            ),
            row(
                "append_single_p99_us",
                format!("{:.1}", micros(single_latency.p99)),
                "<= 2,000",
                format!(
                    "{:.1} fdatasync times",
                    micros(single_latency.p99) * self.baseline.fdatasync_per_sec / 1e6
                ),
            ),
        ]
    }

    /// The read figures, the reopen time and the memory in use.
    fn read_rows(&self) -> Vec<[String; 4]> {
        let read_latency = &self.read_stream.latency;
        vec![
            row(
                "read_all_events_per_sec",
                group(self.read_all.events_per_sec()),
                ">= 3,000,000",
                String::new(),
            ),
            row(
                "read_stream_p50_us",
                format!("{:.1}", micros(read_latency.p50)),
                "",
                String::new(),
            ),
            row(
                "read_stream_p99_us",
                format!("{:.1}", micros(read_latency.p99)),
                "<= 200",
                String::new(),
            ),
            row(
                "reopen_ms",
                format!("{:.1}", self.reopen.elapsed.as_secs_f64() * 1_000.0),
                "<= 2,000",
                format!(
                    "store of {} events (target: 10,000,000)",
                    group(self.reopen.events as f64)
                ),
            ),
            row(
                "memory_resident_bytes",
                self.memory
                    .resident_bytes
                    .map_or_else(|| "unknown".to_owned(), |bytes| group(bytes as f64)),
                "<= 1 GiB",
                format!(
                    "whole bench process, store of {} streams",
                    group(self.memory.streams_total as f64)
                ),
            ),
            row(
                "auth_argon2id_verify_ms",
                format!("{:.1}", self.auth.argon2id_verify.as_secs_f64() * 1_000.0),
                "",
                "one login not in the cache".to_owned(),
            ),
            row(
                "auth_cached_verify_us",
                format!("{:.2}", micros(self.auth.cached_verify)),
                "",
                "every later call of the same user".to_owned(),
            ),
        ]
    }
}

pub(super) fn row(metric: &str, figure: String, target: &str, note: String) -> [String; 4] {
    [metric.to_owned(), figure, target.to_owned(), note]
}

pub(super) fn round(value: f64) -> f64 {
    value.round()
}

pub(super) fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

pub(super) fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

/// A whole number with thousands separators: 1234567.8 -> "1,234,568".
pub(super) fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

pub(super) fn per_sec_bytes(bytes_per_sec: f64) -> String {
    format!("{:.1} MiB/s", bytes_per_sec / (1024.0 * 1024.0))
}

pub(super) fn gibibytes(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0.0), "0");
        assert_eq!(group(999.4), "999");
        assert_eq!(group(1_000.0), "1,000");
        assert_eq!(group(1_234_567.8), "1,234,568");
    }
}
