//! The data subcommands' end-to-end cases, written once and run in both modes: on a local
//! data directory (`cli_local.rs`) and on a spawned `strata serve` (`cli_server.rs`).

pub mod basics;
pub mod exchange;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::Server;

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Generates one `#[test]` per case, each on a fresh target made by `$target`.
macro_rules! data_cases {
    ($target:expr) => {
        data_cases!(@each $target;
            basics::append_from_data_and_from_stdin_then_read_them_back_as_json,
            basics::malformed_stdin_line_is_refused_with_line_and_column_and_nothing_is_written,
            basics::expected_revision_conflict_exits_1_and_says_what_to_do,
            basics::read_forwards_backwards_from_and_count,
            basics::read_all_with_filters,
            basics::streams_lists_event_counts_and_last_revisions,
            basics::metadata_set_then_get_round_trips,
            basics::delete_then_read_says_not_found_and_tombstone_then_append_fails,
            exchange::append_with_id_is_idempotent_and_keeps_metadata,
            exchange::tail_follows_until_interrupted,
            exchange::export_then_import_gives_a_byte_identical_export_and_rerunning_changes_nothing,
            exchange::a_malformed_import_line_is_named_and_everything_before_it_is_imported,
        );
    };
    (@each $target:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                data_cases::$module::$case(&$target);
            }
        )*
    };
}

/// Where a case's commands go: a local data directory, or a running server.
pub enum Target {
    Directory { _temp: TempDir, data_dir: PathBuf },
    Server(Server),
}

impl Target {
    /// A fresh data directory (not yet created) inside a temp dir owned by the test.
    pub fn local() -> Target {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        Target::Directory {
            _temp: temp,
            data_dir,
        }
    }

    /// A fresh `strata serve` on a free loopback port.
    pub fn server() -> Target {
        Target::Server(Server::start())
    }

    /// Another fresh target of the same kind.
    pub fn fresh_like(&self) -> Target {
        match self {
            Target::Directory { .. } => Target::local(),
            Target::Server(_) => Target::server(),
        }
    }

    pub fn is_server(&self) -> bool {
        matches!(self, Target::Server(_))
    }

    /// `strata ARGS` with this target's `--data-dir` or `--server` added.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(STRATA);
        command.args(args);
        match self {
            Target::Directory { data_dir, .. } => {
                command.arg("--data-dir").arg(data_dir);
                if matches!(args.first(), Some(&"append" | &"import")) {
                    // Small segments: each new store zero-fills two.
                    command.args(["--segment-size-mib", "32"]);
                }
            }
            Target::Server(server) => {
                command.arg("--server").arg(server.url());
            }
        }
        // The environment must not choose for the test.
        command.env_remove("STRATA_SERVER").env("NO_COLOR", "1");
        command
    }

    /// Starts `strata ARGS` with stdout piped, for commands that run until stopped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata runs")
    }

    /// Runs `strata ARGS` with `stdin` piped in.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata runs");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin written");
        child.wait_with_output().expect("strata finishes")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, args);
        text(&output.stdout)
    }

    /// `read ARGS --json`, parsed.
    pub fn read_json(&self, args: &[&str]) -> Vec<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        json_lines(&self.ok(&args))
    }
}

/// `lines` (one JSON object with a `stream` each: an export, or `read --json`) without
/// those of the streams that hold users: a server's new store begins with its own
/// built-in users, and an import keeps the target's.
pub fn without_users(lines: &str) -> String {
    lines
        .lines()
        .filter(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            !strata_auth::is_security_stream(value["stream"].as_str().unwrap_or(""))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each --json line is JSON"))
        .collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "strata {args:?} failed ({:?}): {}",
        output.status,
        text(&output.stderr)
    );
}

pub fn assert_exit(output: &Output, code: i32, stderr_has: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(stderr_has),
        "stderr lacks {stderr_has:?}: {stderr}"
    );
}

pub fn revisions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["revision"].as_u64().expect("revision"))
        .collect()
}
