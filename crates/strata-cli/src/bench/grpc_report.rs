//! The figures of `strata bench --server`: one flat JSON object, or a table for people.

use serde_json::{Value, json};

use super::baseline::Baseline;
use super::grpc::Timed;
use super::latency::micros;
use super::machine::Machine;
use super::official_client::OfficialClientFigures;
use super::report::{gibibytes, group, per_sec_bytes, round, round1, round3, row};
use super::throughput::Throughput;

/// The workload as run, echoed next to the figures.
pub(super) struct GrpcShape {
    pub(super) server: String,
    pub(super) event_bytes: u64,
    pub(super) streams: u64,
    pub(super) batch_events: u64,
    pub(super) batched_tasks: u64,
    pub(super) single_tasks: u64,
}

pub(super) struct GrpcReport {
    pub(super) shape: GrpcShape,
    pub(super) machine: Machine,
    /// Measured only when a directory on the server's disk was given.
    pub(super) baseline: Option<Baseline>,
    pub(super) batched: Timed,
    pub(super) single: Timed,
    pub(super) read_all: Throughput,
    /// `$all` read through the official client, in one call.
    pub(super) official_read_all: Throughput,
    /// Left out with `--official-appends 0`.
    pub(super) official: Option<OfficialClientFigures>,
}

impl GrpcReport {
    pub(super) fn to_json(&self) -> Value {
        let (batched, single) = (&self.batched, &self.single);
        let mut object = json!({
            "server": self.shape.server,
            "event_bytes": self.shape.event_bytes,
            "streams": self.shape.streams,
            "batch_events": self.shape.batch_events,
            "batched_tasks": self.shape.batched_tasks,
            "single_tasks": self.shape.single_tasks,
            "machine_cores": self.machine.cores,
            "machine_memory_bytes": self.machine.memory_bytes,
            "grpc_batch_append_events": batched.throughput.events,
            "grpc_batch_append_events_per_sec": round(batched.throughput.events_per_sec()),
            "grpc_batch_append_p50_us": round1(micros(batched.latency.p50)),
            "grpc_batch_append_p99_us": round1(micros(batched.latency.p99)),
            "grpc_append_single_events": single.throughput.events,
            "grpc_append_single_events_per_sec": round(single.throughput.events_per_sec()),
            "grpc_append_single_p50_us": round1(micros(single.latency.p50)),
            "grpc_append_single_p99_us": round1(micros(single.latency.p99)),
            "grpc_append_single_max_us": round1(micros(single.latency.max)),
            "grpc_read_all_events": self.read_all.events,
            "grpc_read_all_events_per_sec": round(self.read_all.events_per_sec()),
            "official_client_read_all_events": self.official_read_all.events,
            "official_client_read_all_events_per_sec": round(self.official_read_all.events_per_sec()),
        });
        if let (Some(official), Some(fields)) = (&self.official, object.as_object_mut()) {
            for (key, value) in official_fields(official) {
                fields.insert(key.to_owned(), value);
            }
        }
        if let (Some(baseline), Some(fields)) = (&self.baseline, object.as_object_mut()) {
            fields.insert(
                "fdatasync_per_sec".to_owned(),
                json!(round(baseline.fdatasync_per_sec)),
            );
            fields.insert(
                "disk_write_bytes_per_sec".to_owned(),
                json!(round(baseline.disk_write_bytes_per_sec)),
            );
            fields.insert(
                "disk_write_baseline_bytes".to_owned(),
                json!(baseline.disk_write_bytes),
            );
            fields.insert(
                "disk_write_baseline_group_bytes".to_owned(),
                json!(baseline.disk_write_group_bytes),
            );
            fields.insert(
                "grpc_append_single_events_per_fdatasync".to_owned(),
                json!(round3(
                    single.throughput.events_per_sec() / baseline.fdatasync_per_sec
                )),
            );
        }
        object
    }

    pub(super) fn print_table(&self) {
        println!(
            "strata bench --server {}: {}-byte events, {}-event batch appends from {} tasks, \
             single appends from {} tasks",
            self.shape.server,
            self.shape.event_bytes,
            group(self.shape.batch_events as f64),
            self.shape.batched_tasks,
            self.shape.single_tasks
        );
        println!(
            "machine: {} cores, {} memory (client and server share them)\n",
            self.machine.cores,
            self.machine
                .memory_bytes
                .map_or("unknown".to_owned(), gibibytes),
        );
        let header = row("metric", "figure".to_owned(), "target", "note".to_owned());
        for row in std::iter::once(header).chain(self.rows()) {
            let line = format!("{:<36} {:>16}  {:<14} {}", row[0], row[1], row[2], row[3]);
            println!("{}", line.trim_end());
        }
    }

    fn rows(&self) -> Vec<[String; 4]> {
        let (batched, single) = (&self.batched, &self.single);
        let mut rows = Vec::new();
        if let Some(baseline) = &self.baseline {
            rows.push(row(
                "fdatasync_per_sec",
                group(baseline.fdatasync_per_sec),
                "",
                String::new(),
            ));
            rows.push(row(
                "disk_write_bytes_per_sec",
                per_sec_bytes(baseline.disk_write_bytes_per_sec),
                "",
                baseline.write_method(),
            ));
        }
        let per_fdatasync = self.baseline.map_or_else(String::new, |baseline| {
            format!(
                "{:.1} events per fdatasync",
                single.throughput.events_per_sec() / baseline.fdatasync_per_sec
            )
        });
        rows.extend([
            row(
                "grpc_batch_append_events_per_sec",
                group(batched.throughput.events_per_sec()),
                ">= 600,000",
                format!(
                    "call p50 {:.0} us, p99 {:.0} us",
                    micros(batched.latency.p50),
                    micros(batched.latency.p99)
                ),
            ),
            row(
                "grpc_append_single_events_per_sec",
                group(single.throughput.events_per_sec()),
                ">= 40,000",
                per_fdatasync,
            ),
            row(
                "grpc_append_single_p50_us",
                format!("{:.1}", micros(single.latency.p50)),
                "",
                String::new(),
            ),
            row(
                "grpc_append_single_p99_us",
                format!("{:.1}", micros(single.latency.p99)),
                "",
                String::new(),
            ),
            row(
                "grpc_read_all_events_per_sec",
                group(self.read_all.events_per_sec()),
                ">= 1,000,000",
                format!("{} events in $all", group(self.read_all.events as f64)),
            ),
            row(
                "official_client_read_all_per_sec",
                group(self.official_read_all.events_per_sec()),
                ">= 1,000,000",
                "one Read call through the official client".to_owned(),
            ),
        ]);
        if let Some(official) = &self.official {
            rows.extend(official_rows(official));
        }
        rows
    }
}

fn official_fields(official: &OfficialClientFigures) -> [(&'static str, Value); 7] {
    let (on, off) = (&official.nagle_on, &official.nagle_off);
    [
        (
            "official_client_append_single_events",
            json!(on.throughput.events),
        ),
        (
            "official_client_append_single_events_per_sec",
            json!(round(on.throughput.events_per_sec())),
        ),
        (
            "official_client_append_single_p50_us",
            json!(round1(micros(on.latency.p50))),
        ),
        (
            "official_client_nodelay_append_single_events",
            json!(off.throughput.events),
        ),
        (
            "official_client_nodelay_append_single_events_per_sec",
            json!(round(off.throughput.events_per_sec())),
        ),
        (
            "official_client_nodelay_append_single_p50_us",
            json!(round1(micros(off.latency.p50))),
        ),
        (
            "official_client_nagle_ratio",
            json!(round3(official.nagle_ratio())),
        ),
    ]
}

/// One writer through the official Rust client, Nagle as shipped (on) and forced off.
fn official_rows(official: &OfficialClientFigures) -> [[String; 4]; 3] {
    let p50 = |timed: &super::official_client::Timed| {
        format!("call p50 {:.0} us", micros(timed.latency.p50))
    };
    [
        row(
            "official_client_append_single_per_sec",
            group(official.nagle_on.throughput.events_per_sec()),
            "",
            format!("1 writer, Nagle on; {}", p50(&official.nagle_on)),
        ),
        row(
            "official_nodelay_append_single_per_sec",
            group(official.nagle_off.throughput.events_per_sec()),
            "",
            format!("1 writer, Nagle forced off; {}", p50(&official.nagle_off)),
        ),
        row(
            "official_client_nagle_ratio",
            format!("{:.3}", official.nagle_ratio()),
            ">= 0.9",
            "Nagle on / forced off".to_owned(),
        ),
    ]
}
