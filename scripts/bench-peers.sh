#!/usr/bin/env bash
# Strata beside UmaDB through the public Event Store Benchmark Suite (ESBS,
# pyeventsourcing/eventstore-benchmarks): issue 12, steps 5 and 6. docs/BENCHMARKS.md,
# "Step 5: beside UmaDB through ESBS", says what it measures and how to read the output.
#
#   scripts/bench-peers.sh [build|run|all]        (default: all)
#
# build: fetch ESBS and UmaDB into a scratch directory outside the repo, point ESBS's
#        kurrentdb and umadb adapters at running servers (one line inserted at the top of
#        each adapter's start and pull: build_esbs below), and build both in release mode.
#        Nothing third-party is ever written inside the repo.
# run:   start `strata serve` and UmaDB on fresh data directories (loopback), run ESBS's
#        workloads against each in interleaved rounds (the order alternates every round), and
#        print the paired ratios Strata/UmaDB per workload (median over rounds), then the
#        resident memory of both servers per million events stored.
#
# Environment (all optional):
#   ESBS_SRC       git URL, git directory (bare or not; its HEAD commit) or plain directory
#                  [https://github.com/pyeventsourcing/eventstore-benchmarks.git]
#   ESBS_REV       commit or branch to check out [the source's HEAD]
#   UMADB_SRC      "crates.io" (cargo install umadb --version UMADB_VERSION), or a git URL /
#                  git directory / plain directory of umadb-io/umadb [crates.io]
#   UMADB_VERSION  version from the crate registry [0.7.8]
#   UMADB_REV      commit or branch when UMADB_SRC is git
#   STRATA_BIN     a release `strata` binary [cargo build --release -p strata-cli here]
#   PEERS_DIR      scratch directory [$HOME/.cache/strata-peers]
#   PEERS_ROUNDS   rounds [3]           PEERS_DURATION  seconds per measured run [10]
#   PEERS_WRITERS  single-append writer counts ["1 8 64"]
#   PEERS_READERS  concurrent readers of the read workloads [8]
#   PEERS_SETUP_EVENTS  events each read workload appends first, in 100- or 1,000-event
#                  appends (timed: those are the batched-append figures) [200000]
#   PEERS_WORKLOADS  subset of: append-1 append-8 append-64 (one per PEERS_WRITERS)
#                  reads-100 reads-1000 mixed [all]
#   PEERS_SEED     ESBS's random seed [42]      PEERS_KEEP=1 keeps the data directories
#   PEERS_KURRENTDB_PARAMS  more connection-string settings for the official client, e.g.
#                  "&discoveryInterval=0" (the client sleeps its discovery interval, 500 ms
#                  by default, before its first connection, even to one node) [none]
#
# Needs: git, cargo, protoc (Debian: protobuf-compiler; UmaDB's and ESBS's gRPC crates run
# it at build time), jq, python3 (a free port), and about 5 GB in PEERS_DIR (1.5 GB of
# builds; the servers' data, removed at the end, reached 2.4 GB in 5 rounds).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
step="${1:-all}"
case "$step" in build | run | all) ;; *)
  echo "usage: $0 [build|run|all]" >&2
  exit 2
  ;;
esac

ESBS_SRC="${ESBS_SRC:-https://github.com/pyeventsourcing/eventstore-benchmarks.git}"
ESBS_REV="${ESBS_REV:-}"
UMADB_SRC="${UMADB_SRC:-crates.io}"
UMADB_VERSION="${UMADB_VERSION:-0.7.8}"
UMADB_REV="${UMADB_REV:-}"
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/strata-peers}"
rounds="${PEERS_ROUNDS:-3}"
duration="${PEERS_DURATION:-10}"
writers_list="${PEERS_WRITERS:-1 8 64}"
readers="${PEERS_READERS:-8}"
setup_events="${PEERS_SETUP_EVENTS:-200000}"
seed="${PEERS_SEED:-42}"
kurrentdb_params="${PEERS_KURRENTDB_PARAMS:-}"

case "$PEERS_DIR" in "$repo" | "$repo"/*)
  echo "bench-peers: PEERS_DIR must be outside the repository ($repo)" >&2
  exit 2
  ;;
esac
for tool in git cargo protoc jq python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-peers: $tool not found (protoc: apt-get install protobuf-compiler)" >&2
    exit 2
  }
done
mkdir -p "$PEERS_DIR/src" "$PEERS_DIR/target"
export CARGO_INCREMENTAL=0

# A fresh copy of SRC (URL, git directory or plain directory) at DEST, at REV if given.
fetch_src() {
  local src="$1" rev="$2" dest="$3"
  rm -rf "$dest"
  if [ -d "$src" ] && ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    cp -a "$src" "$dest"
  else
    git clone --quiet "$src" "$dest"
  fi
  if [ -n "$rev" ]; then git -C "$dest" checkout --quiet "$rev"; fi
}

# Insert TEXT after the first line of FILE that matches the Perl regex ANCHOR; fail unless
# it matched exactly once (so a changed upstream file stops the script instead of being
# benchmarked half-edited).
insert_after() {
  local file="$1" anchor="$2" text="$3" count
  count="$(grep -cP "$anchor" "$file" || true)"
  if [ "$count" != 1 ]; then
    echo "bench-peers: expected one line matching '$anchor' in $file, found $count" >&2
    exit 1
  fi
  ANCHOR="$anchor" TEXT="$text" perl -0pi -e 's/^(.*$ENV{ANCHOR}.*\n)/$1$ENV{TEXT}\n/m' "$file"
}

esbs_dir="$PEERS_DIR/src/esbs"
esbs_bin="$PEERS_DIR/target/esbs/release/es-bench"
umadb_bin_file="$PEERS_DIR/umadb-bin"

build_esbs() {
  fetch_src "$ESBS_SRC" "$ESBS_REV" "$esbs_dir"
  # The two edits: when ESBS_KURRENTDB_URL / ESBS_UMADB_URL is set, the adapter's
  # StoreManager connects to that running server instead of starting a docker
  # testcontainer, and pulls no image. Workloads, clients and measurements are unchanged.
  local kdb="$esbs_dir/rust/adapters/kurrentdb/src/lib.rs"
  local uma="$esbs_dir/rust/adapters/umadb/src/lib.rs"
  insert_after "$kdb" 'async fn start\(&mut self\) -> Result<\(\)> \{' \
    '        if let Ok(url) = std::env::var("ESBS_KURRENTDB_URL") { self.uri = Some(url); return Ok(()); }'
  insert_after "$kdb" 'async fn pull\(&mut self\) -> Result<\(\)> \{' \
    '        if std::env::var_os("ESBS_KURRENTDB_URL").is_some() { return Ok(()); }'
  insert_after "$uma" 'async fn start\(&mut self\) -> Result<\(\)> \{' \
    '        if let Ok(url) = std::env::var("ESBS_UMADB_URL") { let client = UmaDBClient::new(url).connect_async().await?; client.head().await?; self.client = Some(Arc::new(client)); return Ok(()); }'
  insert_after "$uma" 'async fn pull\(&mut self\) -> Result<\(\)> \{' \
    '        if std::env::var_os("ESBS_UMADB_URL").is_some() { return Ok(()); }'
  echo "bench-peers: building ESBS $(git -C "$esbs_dir" rev-parse --short HEAD 2>/dev/null || echo '(not git)')"
  (cd "$esbs_dir" && CARGO_TARGET_DIR="$PEERS_DIR/target/esbs" \
    nice cargo build --release --locked -p es-bench)
}

build_umadb() {
  if [ "$UMADB_SRC" = crates.io ]; then
    # UmaDB's own release profile (its workspace's; a published crate does not carry it).
    echo "bench-peers: building umadb $UMADB_VERSION from the crate registry"
    CARGO_TARGET_DIR="$PEERS_DIR/target/umadb" CARGO_PROFILE_RELEASE_LTO=fat \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
      nice cargo install --quiet --locked umadb --version "$UMADB_VERSION" \
      --root "$PEERS_DIR/umadb-$UMADB_VERSION"
    echo "$PEERS_DIR/umadb-$UMADB_VERSION/bin/umadb" >"$umadb_bin_file"
  else
    local dir="$PEERS_DIR/src/umadb"
    fetch_src "$UMADB_SRC" "$UMADB_REV" "$dir"
    echo "bench-peers: building umadb $(git -C "$dir" rev-parse --short HEAD 2>/dev/null || echo '(not git)')"
    (cd "$dir" && CARGO_TARGET_DIR="$PEERS_DIR/target/umadb" \
      nice cargo build --release --locked -p umadb)
    echo "$PEERS_DIR/target/umadb/release/umadb" >"$umadb_bin_file"
  fi
}

strata_bin() {
  if [ -n "${STRATA_BIN:-}" ]; then
    echo "$STRATA_BIN"
    return
  fi
  (cd "$repo" && nice cargo build --release -p strata-cli --bin strata >&2)
  echo "${CARGO_TARGET_DIR:-$repo/target}/release/strata"
}

if [ "$step" != run ]; then
  build_esbs
  build_umadb
fi
[ "$step" = build ] && exit 0

strata="$(strata_bin)"
[ -x "$strata" ] || {
  echo "bench-peers: no strata binary at $strata" >&2
  exit 1
}
if [ ! -x "$esbs_bin" ] || [ ! -f "$umadb_bin_file" ]; then
  echo "bench-peers: run '$0 build' first" >&2
  exit 1
fi
umadb="$(cat "$umadb_bin_file")"

# ---------------------------------------------------------------- workloads (ESBS YAML)
out="$PEERS_DIR/runs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out/configs"
workloads=()
for w in $writers_list; do
  workloads+=("append-$w")
  cat >"$out/configs/append-$w.yaml" <<EOF
name: append-$w
workload_type: performance
mode: write
duration_seconds: $duration
concurrency:
  writers: $w
operations:
  write:
    event_size_bytes: 256
EOF
done
for per in 100 1000; do
  workloads+=("reads-$per")
  cat >"$out/configs/reads-$per.yaml" <<EOF
name: reads-$per
workload_type: performance
mode: read
duration_seconds: $duration
concurrency:
  readers: $readers
operations:
  write:
    event_size_bytes: 256
  read:
    batch_size: $per
setup:
  prepopulate_events: $setup_events
  prepopulate_streams: $((setup_events / per))
EOF
done
workloads+=(mixed)
# ESBS's configs/mixed-balanced-50-50.yaml with our duration.
cat >"$out/configs/mixed.yaml" <<EOF
name: mixed
workload_type: performance
mode: mixed
duration_seconds: $duration
concurrency:
  writers: 8
  readers: 8
operations:
  write:
    event_size_bytes: 256
    probability: 0.5
  read:
    batch_size: 50
    probability: 0.5
setup:
  prepopulate_events: 10000
  prepopulate_streams: 5000
EOF
if [ -n "${PEERS_WORKLOADS:-}" ]; then read -r -a workloads <<<"$PEERS_WORKLOADS"; fi

# ---------------------------------------------------------------- servers
data="$out/data"
mkdir -p "$data/strata" "$data/umadb"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${PEERS_KEEP:-0}" != 1 ]; then rm -rf "$data"; fi
}
trap cleanup EXIT

"$strata" serve --insecure --data-dir "$data/strata" --bind 127.0.0.1 --port 0 \
  >"$out/strata.log" 2>&1 &
strata_pid=$!
pids+=("$strata_pid")
uma_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$umadb" --listen "127.0.0.1:$uma_port" --db-path "$data/umadb/uma.db" >"$out/umadb.log" 2>&1 &
uma_pid=$!
pids+=("$uma_pid")

strata_port=""
for _ in $(seq 300); do
  strata_port="$(sed -n 's/^strata serve: ready on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/strata.log")"
  [ -n "$strata_port" ] && break
  kill -0 "$strata_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$strata_port" ] || {
  echo "bench-peers: strata serve did not start:" >&2
  cat "$out/strata.log" >&2
  exit 1
}
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$uma_port") 2>/dev/null && break
  kill -0 "$uma_pid" 2>/dev/null || break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$uma_port") 2>/dev/null || {
  echo "bench-peers: umadb did not start:" >&2
  cat "$out/umadb.log" >&2
  exit 1
}
export ESBS_KURRENTDB_URL="esdb://127.0.0.1:$strata_port?tls=false$kurrentdb_params"
export ESBS_UMADB_URL="http://127.0.0.1:$uma_port"

rss_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
strata_rss0="$(rss_kb "$strata_pid" VmRSS)"
uma_rss0="$(rss_kb "$uma_pid" VmRSS)"

esbs_commit="$(git -C "$esbs_dir" rev-parse HEAD 2>/dev/null || echo unknown)"
{
  if [ -n "${STRATA_BIN:-}" ]; then
    echo "strata: $("$strata" --version) ($strata), port $strata_port"
  else
    echo "strata: $("$strata" --version) built at $(git -C "$repo" rev-parse --short HEAD), port $strata_port"
  fi
  echo "umadb: $umadb ($UMADB_SRC ${UMADB_VERSION}), port $uma_port"
  echo "esbs: $esbs_commit; the official client's URL: $ESBS_KURRENTDB_URL"
  echo "rounds $rounds, ${duration}s per run, workloads: ${workloads[*]}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/header.txt"

# ---------------------------------------------------------------- rounds
# One ESBS run: WORKLOAD on STORE (strata|umadb) in round R; its summary.json and the
# setup phase's timing end up in $out/results.jsonl as one line.
run_one() {
  local r="$1" wl="$2" store="$3" adapter dir summary setup_n setup_s
  adapter=kurrentdb
  [ "$store" = umadb ] && adapter=umadb
  dir="$out/r$r/$wl/$store"
  mkdir -p "$dir"
  sed "1a stores: [$adapter]" "$out/configs/$wl.yaml" >"$dir/config.yaml"
  if ! (cd "$dir" && "$esbs_bin" --log warn run --config config.yaml --seed "$seed" >run.log 2>&1); then
    echo "bench-peers: ESBS failed ($wl on $store, round $r); last lines of $dir/run.log:" >&2
    tail -20 "$dir/run.log" >&2
    exit 1
  fi
  summary="$(find "$dir/results" -name summary.json | head -1)"
  setup_n="$(sed -n 's/^Running setup phase: prepopulating \([0-9]*\) events.*/\1/p' "$dir/run.log")"
  setup_s="$(sed -n 's/^Setup phase completed in \([0-9.]*\) seconds.*/\1/p' "$dir/run.log")"
  jq -c --arg r "$r" --arg wl "$wl" --arg store "$store" \
    --arg sn "${setup_n:-0}" --arg ss "${setup_s:-0}" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
    '{round: ($r|tonumber), workload: $wl, store: $store, eps: .throughput_eps,
      p50_ms: .latency.p50_ms, p99_ms: .latency.p99_ms, written: .events_written,
      read: .events_read, setup_events: ($sn|tonumber), setup_s: ($ss|tonumber),
      load: ($load|tonumber)}' "$summary" >>"$out/results.jsonl"
  printf '  round %s %-10s %-6s %12.0f ops/s  p50 %7.2f ms  p99 %7.2f ms%s\n' "$r" "$wl" "$store" \
    "$(jq .throughput_eps "$summary")" "$(jq .latency.p50_ms "$summary")" \
    "$(jq .latency.p99_ms "$summary")" \
    "$([ -n "$setup_n" ] && echo "  (setup: $setup_n events in ${setup_s}s)")"
}

for r in $(seq "$rounds"); do
  order=(strata umadb)
  [ $((r % 2)) = 0 ] && order=(umadb strata)
  for wl in "${workloads[@]}"; do
    for store in "${order[@]}"; do run_one "$r" "$wl" "$store"; done
  done
  echo "  round $r done; load: $(cut -d' ' -f1-3 /proc/loadavg)"
done

# ---------------------------------------------------------------- report
{
  echo
  echo "paired ratios Strata/UmaDB, median over $rounds rounds (ops/s as ESBS reports them):"
  jq -rs --arg order "${workloads[*]}" '
    def median: sort | if length % 2 == 1 then .[length/2|floor]
                       else (.[length/2 - 1] + .[length/2]) / 2 end;
    def row($name; f):
      [ group_by(.round)[] | (map(select(.store == "strata"))[0] | f) as $s
        | (map(select(.store == "umadb"))[0] | f) as $u
        | select($s != null and $u != null and $u > 0) | {s: $s, u: $u, ratio: ($s / $u)} ] as $p
      | select($p | length > 0)
      | "  \($name | . + " " * (22 - length)) strata \($p | map(.s) | median | floor)  umadb \($p | map(.u) | median | floor)  ratio \($p | map(.ratio) | median * 100 | round / 100)  (rounds: \($p | map(.ratio * 100 | round / 100) | join(" ")))";
    ($order | split(" ")) as $ord
    | group_by(.workload) | sort_by(.[0].workload as $n | $ord | index($n))[]
    | . as $w | $w[0].workload as $name
    | row($name; .eps),
      (if ($name | startswith("reads-")) then
         row("appends of " + ($name | ltrimstr("reads-")) + " (setup)";
             if .setup_s > 0 then .setup_events / .setup_s else null end)
       else empty end)
  ' "$out/results.jsonl"
} | tee "$out/ratios.txt"

# Resident memory after the runs, per million events stored (step 6). Events stored: every
# setup event and every single append ESBS counted.
events="$(jq -s 'map(select(.store == "strata") | .setup_events + .written) | add' "$out/results.jsonl")"
uma_events="$(jq -s 'map(select(.store == "umadb") | .setup_events + .written) | add' "$out/results.jsonl")"
{
  echo
  echo "resident memory (RSS) after the runs; load: $(cut -d' ' -f1-3 /proc/loadavg):"
  for s in strata umadb; do
    if [ "$s" = strata ]; then pid=$strata_pid rss0=$strata_rss0 n=$events; else pid=$uma_pid rss0=$uma_rss0 n=$uma_events; fi
    rss="$(rss_kb "$pid" VmRSS)"
    hwm="$(rss_kb "$pid" VmHWM)"
    disk="$(du -sk "$data/$s" | cut -f1)"
    awk -v s="$s" -v n="$n" -v r0="$rss0" -v r="$rss" -v h="$hwm" -v d="$disk" 'BEGIN {
      printf "  %-6s %d events: RSS %.1f MB (empty %.1f MB, peak %.1f MB): %.1f MB per million events (%.0f bytes/event over the empty server); data %.1f MB on disk\n",
        s, n, r / 1024, r0 / 1024, h / 1024, (r - r0) / 1024 / (n / 1e6), (r - r0) * 1024 / n, d / 1024 }'
  done
} | tee "$out/memory.txt"
echo "results: $out"
