#!/usr/bin/env bash
# The whole test suite: every Rust test (unit, conformance on the engine and on PostgreSQL,
# property, crash, corruption, the official Rust client against real servers), the doc
# tests, the official Python and Node clients against a real `strata serve`, the HTTP API fuzzed
# against its OpenAPI document (schemathesis), every fuzz target for a fixed number of
# inputs (scripts/fuzz.sh), and both clients and the load limits again with every server
# keeping its events in PostgreSQL.
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`; STRATA_TEST_POSTGRES_URL
# overrides): scripts/ensure-postgres.sh installs and starts it when nothing answers.
# The connector tests need NATS with JetStream on 127.0.0.1:4222 and RabbitMQ on
# 127.0.0.1:5672: scripts/ensure-brokers.sh installs and starts them likewise.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
scripts/ensure-brokers.sh
cargo nextest run --workspace --all-features
cargo test --workspace --all-features --doc
scripts/test-python.sh
scripts/test-node.sh
scripts/test-openapi.sh
scripts/fuzz.sh --runs "${STRATA_FUZZ_RUNS:-3000}"
STRATA_TEST_STORE=postgres cargo nextest run -p strata-cli --all-features -E 'binary(kurrentdb_rust_client)'
# The load limits on PostgreSQL too (≈ 35 s; docs/RELIABILITY.md).
STRATA_TEST_STORE=postgres cargo nextest run -p strata-cli --all-features -E 'binary(load_limits)'
STRATA_TEST_STORE=postgres scripts/test-python.sh
scripts/test-ui.sh
