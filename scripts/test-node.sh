#!/usr/bin/env bash
# Black-box tests of `strata serve` with the official KurrentDB Node client
# (@kurrent/kurrentdb-client, pinned in tests/node's package-lock.json): its multi-stream
# appends (multiStreamAppend, appendRecords) against a real server on a free loopback port.
#
# Installs what it needs: nodejs and npm from apt when absent, the npm packages with
# `npm ci` when tests/node/node_modules does not match the lock.
#
# Env: STRATA_BIN (default: the debug build, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/python-env.sh
source "$root/scripts/lib/python-env.sh"

if ! command -v npm >/dev/null; then
  echo "test-node: installing nodejs and npm" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.package-lock.json 2>/dev/null \
  && ! (cd tests/node && npm ls --silent >/dev/null 2>&1); then
  (cd tests/node && npm ci --no-audit --no-fund --silent)
fi

default_strata_bin "$root"
case "$STRATA_BIN" in /*) ;; *) STRATA_BIN="$root/$STRATA_BIN" ;; esac
if [[ ! -x "$STRATA_BIN" ]]; then
  echo "test-node: strata binary not found or not executable: $STRATA_BIN" >&2
  exit 1
fi
export STRATA_BIN
cd tests/node
exec node --no-warnings --test --test-reporter=spec multi_append.test.mjs
