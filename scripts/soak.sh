#!/usr/bin/env bash
# The kill soak: `strata serve` (release build) under a recorded mixed workload, SIGKILLed at
# random moments CYCLES times and restarted on the same data directory; after every kill
# `strata verify` must be clean, and after every restart the history is checked (every
# acknowledged append at its revision and position, one winner per revision, real
# refusals, monotonic reads, gapless subscriptions): what changed since the kill before,
# and the whole history every `--full-check-every` kills (default 100) and at the end, so
# cycles keep their pace as the history grows. docs/RELIABILITY.md explains it.
#
#   scripts/soak.sh [CYCLES] [extra strata-check soak options]
#   STRATA_SOAK_STORE=cluster scripts/soak.sh [FAULTS] [extra strata-check cluster options]
#
# STRATA_SOAK_STORE=cluster runs three `strata serve` nodes on one schema of a private
# PostgreSQL (started in a temporary directory on a free port, as the `postgres` user when
# run as root) and, instead of kills, terminates the nodes' PostgreSQL sessions and restarts
# PostgreSQL in turn, FAULTS times, checking the history after each.
#
# STRATA_SOAK_STORE=postgres runs it on PostgreSQL instead (a fresh schema of
# STRATA_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test; the schema stays
# for inspection and is named in the server log's file name).
# On the engine and on PostgreSQL a continuous projection runs too, and a connector publishing
# to NATS JetStream at STRATA_SOAK_NATS (default nats://127.0.0.1:4222; `none` leaves it out):
# both are checked after every restart (exactly once, and at least once in order per stream).
# STRATA_SOAK_PROFILE=debug uses debug builds. The data directory and the server log stay in
# a temporary directory, printed first, for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

cycles="${1:-100}"
shift || true
profile="${STRATA_SOAK_PROFILE:-release}"
profile_flag=()
if [ "$profile" = release ]; then profile_flag=(--release); fi

cargo build "${profile_flag[@]}" -p strata-cli --bin strata -p strata-check --bin strata-check
target="${CARGO_TARGET_DIR:-target}/$profile"

work="$(mktemp -d -t strata-soak.XXXXXX)"
echo "soak: $cycles kills, $profile build, commit $(git rev-parse --short HEAD), in $work"

if [ "${STRATA_SOAK_STORE:-engine}" = cluster ]; then
  exec "$target/strata-check" cluster --strata "$target/strata" --cycles "$cycles" \
    --history "$work/history.json" "$@"
fi
nats=(--nats "${STRATA_SOAK_NATS:-nats://127.0.0.1:4222}")
if [ "${STRATA_SOAK_NATS:-}" = none ]; then nats=(); fi
if [ "${STRATA_SOAK_STORE:-engine}" = postgres ]; then
  schema="strata_soak_$(date +%s)_$$"
  exec "$target/strata-check" soak --strata "$target/strata" --cycles "$cycles" \
    --store "${STRATA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" \
    --store-schema "$schema" --history "$work/history.json" "${nats[@]}" "$@"
fi
exec "$target/strata-check" soak --strata "$target/strata" --cycles "$cycles" \
  --data-dir "$work/data" --history "$work/history.json" "${nats[@]}" "$@"
