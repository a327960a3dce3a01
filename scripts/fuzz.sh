#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/:
#   scripts/fuzz.sh [SECONDS] [TARGET...]     each target for SECONDS (default 10), learning
#                                             into ~/.cache/strata-fuzz/corpus/<target>
#   scripts/fuzz.sh --runs N [TARGET...]      each target for N inputs with a fixed seed,
#                                             from the seeds in fuzz/corpus only (CI: the same
#                                             inputs every run)
# Builds with libFuzzer's coverage instrumentation on the stable compiler (the flags
# `cargo fuzz` passes, without a sanitizer), so no nightly toolchain is needed. A crashing
# input is written to ~/.cache/strata-fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=10)
learn=1
if [ "${1:-}" = "--runs" ]; then
  limit=(-runs="$2" -seed=1)
  learn=0
  shift 2
elif [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$1")
  shift
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(segment_recovery index_file stream_metadata filter_regex ndjson_line grpc_request http_request
    projection_source)
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
state="$HOME/.cache/strata-fuzz"
export CARGO_TARGET_DIR="${STRATA_FUZZ_TARGET_DIR:-$state/target}"
# With --target, RUSTFLAGS reach only the fuzzed code, not build scripts or proc macros.
# Not --locked: fuzz/Cargo.lock follows the workspace's dependencies as they change.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")

for target in "${targets[@]}"; do
  artifacts="$state/artifacts/$target"
  mkdir -p "$artifacts" "fuzz/corpus/$target"
  if [ "$learn" = 1 ]; then
    corpus="$state/corpus/$target"
    mkdir -p "$corpus"
  else
    corpus="$(mktemp -d)"
  fi
  log="$state/$target.log"
  echo "== $target: ${limit[*]}"
  status=0
  "$CARGO_TARGET_DIR/$host/release/$target" "${limit[@]}" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  [ "$learn" = 1 ] || rm -rf "$corpus"
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -60 "$log" >&2
    echo "fuzz target $target failed (exit $status); the input is in $artifacts" >&2
    exit 1
  fi
done
