//! `strata serve`'s configuration through the binary: flags over `STRATA_*` over the
//! `--config` file over defaults, `--print-config`, and unknown keys named.

use std::process::{Command, Output};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn print_config(config: &std::path::Path, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let mut command = Command::new(STRATA);
    command
        .args(["serve", "--print-config", "--config"])
        .arg(config)
        .args(flags);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("STRATA_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn value(output: &Output, key: &str) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout.clone()).unwrap();
    let table: toml::Table = printed.parse().unwrap();
    table[key].to_string()
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        "port = 3000\nmax_subscriptions = 9\nlog_format = \"json\"\n",
    )
    .unwrap();
    let from_file = print_config(&config, &[], &[]);
    assert_eq!(value(&from_file, "port"), "3000");
    assert_eq!(value(&from_file, "log_format"), "\"json\"");
    assert_eq!(
        value(&from_file, "max_connections"),
        strata_server::CONNECTIONS_MAX_DEFAULT.to_string()
    );
    let from_env = print_config(
        &config,
        &[("STRATA_PORT", "4000"), ("STRATA_LOG_FORMAT", "text")],
        &[],
    );
    assert_eq!(value(&from_env, "port"), "4000");
    assert_eq!(value(&from_env, "log_format"), "\"text\"");
    assert_eq!(value(&from_env, "max_subscriptions"), "9");
    let from_flag = print_config(&config, &[("STRATA_PORT", "4000")], &["--port", "5000"]);
    assert_eq!(value(&from_flag, "port"), "5000");
}

#[test]
fn an_unknown_key_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "port = 3000\nhttp_body_max_mb = 3\n").unwrap();
    let output = print_config(&config, &[], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http_body_max_mb"), "{stderr}");
}
