#!/usr/bin/env bash
# Fuzzes the HTTP API of a real `strata serve --insecure` against the OpenAPI document it
# serves at /.well-known/openapi, with schemathesis: no answer may be a 5xx, every answer
# must match the document's schema, and a refused (4xx) request must write nothing
# (tests/openapi/hooks.py). Bounded: a fixed number of cases per operation, about a minute.
#
# Env:
#   STRATA_OPENAPI_VENV   venv to create/reuse (default: $HOME/.cache/strata-venv-schemathesis)
#   STRATA_BIN            strata binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/strata,
#                         built with `cargo build --bin strata` first)
#   STRATA_OPENAPI_EXAMPLES  cases per operation (default 50)
# Extra arguments are passed to `st run`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/python-env.sh
source "$root/scripts/lib/python-env.sh"

venv="${STRATA_OPENAPI_VENV:-$HOME/.cache/strata-venv-schemathesis}"
req="$root/tests/openapi/requirements.txt"
ensure_venv "$venv" "$req"

default_strata_bin "$root"

work="$(mktemp -d "${TMPDIR:-/tmp}/strata-openapi.XXXXXX")"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$STRATA_BIN" serve --insecure --bind 127.0.0.1 --port 0 --data-dir "$work/data" \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
# The server prints one line on stdout when it is ready.
for _ in $(seq 1 300); do
  if grep -q "ready on" "$work/stdout"; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "test-openapi: the server stopped:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
address="$(sed -n 's/.*ready on \([^ ,]*\).*/\1/p' "$work/stdout" | head -n 1)"
if [[ -z "$address" ]]; then
  echo "test-openapi: the server did not say it was ready" >&2
  cat "$work/stderr" >&2
  exit 1
fi
url="http://$address"
export STRATA_URL="$url"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$root/tests/openapi${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

# Subscriptions never end by themselves: they are tested in crates/strata-http/tests.
# Run from the scratch directory: schemathesis keeps a cache (.schemathesis/) where it runs.
cd "$work"
"$venv/bin/st" --no-color run "$url/.well-known/openapi" \
  --url "$url" \
  --checks not_a_server_error,response_schema_conformance,refused_requests_write_nothing \
  --exclude-path-regex '^/v1/subscriptions/' \
  --phases examples,coverage,fuzzing \
  --max-examples "${STRATA_OPENAPI_EXAMPLES:-50}" \
  --workers 1 \
  --request-timeout 10 \
  --seed 20261204 \
  "$@"
