#!/usr/bin/env bash
# Runs the official Python client's own tests (kurrentdbclient's tests/, written against a
# real KurrentDB) against `strata serve`. Third-party code: it is never copied into this
# repository. PyPI's sdist of kurrentdbclient carries no tests, so the checkout is fetched by
# hand (GitHub is not reachable from CI); see docs/PROJECTIONS.md, "The official Python
# client's own tests", for the procedure and the results.
#
# Usage: scripts/test-kurrentdbclient-upstream.sh CHECKOUT [pytest arguments]
#   CHECKOUT  a checkout of github.com/pyeventsourcing/kurrentdbclient (its tests/ and
#             pyproject.toml are used; the client installed is the checkout's version)
#   default pytest arguments: the projection tests, sync and async, single node:
#             -k "projection and not Cluster"
# Env:
#   STRATA_BIN  strata binary (default: ${CARGO_TARGET_DIR:-target}/debug/strata, built first)
#   STRATA_UPSTREAM_VENV  venv (default: $HOME/.cache/strata-venv-kdb-<version>)
#
# The upstream suite expects KurrentDB's docker setup: an insecure node on localhost:2113 and
# a secure one (admin:changeit, its certificate fetched from the port) on localhost:2114.
# Both ports must be free; two `strata serve` take them (--insecure, and --dev).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/python-env.sh
source "$root/scripts/lib/python-env.sh"

if [[ $# -lt 1 || ! -f "$1/pyproject.toml" || ! -d "$1/tests" ]]; then
  echo "usage: $0 KURRENTDBCLIENT_CHECKOUT [pytest arguments]" >&2
  echo "  (a checkout with pyproject.toml and tests/)" >&2
  exit 2
fi
checkout="$(cd "$1" && pwd)"
shift
version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$checkout/pyproject.toml" | head -1)"
if [[ -z "$version" ]]; then
  echo "test-kurrentdbclient-upstream: no version in $checkout/pyproject.toml" >&2
  exit 2
fi

venv="${STRATA_UPSTREAM_VENV:-$HOME/.cache/strata-venv-kdb-$version}"
req="$(mktemp)"
trap 'rm -f "$req"' EXIT
printf 'kurrentdbclient==%s\npytest==8.3.5\n' "$version" >"$req"
ensure_venv "$venv" "$req"

default_strata_bin "$root"
case "$STRATA_BIN" in /*) ;; *) STRATA_BIN="$root/$STRATA_BIN" ;; esac
if [[ ! -x "$STRATA_BIN" ]]; then
  echo "test-kurrentdbclient-upstream: strata binary not found: $STRATA_BIN" >&2
  exit 1
fi

for port in 2113 2114; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "test-kurrentdbclient-upstream: port $port is in use (the suite needs 2113 and 2114)" >&2
    exit 1
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/strata-upstream.XXXXXX")"
pids=()
stop_servers() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  rm -f "$req"
}
trap stop_servers EXIT

# start_server NAME PORT ARGS...: starts `strata serve` and waits for its ready line.
start_server() {
  local name="$1" port="$2"
  shift 2
  "$STRATA_BIN" serve --data-dir "$work/$name" --segment-size-mib 32 --port "$port" "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=("$!")
  local pid="$!"
  for _ in $(seq 1 200); do
    if grep -q '^strata serve: ready on' "$work/$name.out" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "test-kurrentdbclient-upstream: strata serve ($name) did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}
start_server insecure 2113 --insecure
start_server secure 2114 --dev

export PYTHONDONTWRITEBYTECODE=1
export GRPC_ENABLE_FORK_SUPPORT=false
if [[ $# -eq 0 ]]; then
  set -- -k "projection and not Cluster"
fi
set +e
(cd "$checkout" && "$venv/bin/python" -m pytest -p no:cacheprovider -v \
  tests/test_client.py tests/test_client_async.py "$@")
rc=$?
set -e
exit $rc
