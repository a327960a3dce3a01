#!/usr/bin/env bash
# The web UI in a real browser (docs/UI.md): playwright-core (pinned in tests/ui's
# package-lock.json) drives Debian's chromium, headless, against real `strata serve`
# processes on free loopback ports with temporary data directories.
#
# Installs what it needs: chromium from apt when /usr/bin/chromium is absent, the npm
# packages with `npm ci` when tests/ui/node_modules does not match the lock.
#
#   scripts/test-ui.sh                 the tests (a 20,000-event stream for the paging figure)
#   scripts/test-ui.sh --screenshots   the same, writing each page's screenshot to docs/ui/
#   scripts/test-ui.sh --bench         the figures of docs/BENCHMARKS.md: paging a stream of
#                                      1,000,000 events, the tail at 10,000 events/s
#
# Env: STRATA_BIN (default: the debug build, built first), CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/python-env.sh
source "$root/scripts/lib/python-env.sh"

for arg in "$@"; do
  case "$arg" in
    --screenshots) export STRATA_UI_SCREENSHOTS="$root/docs/ui" ;;
    --bench) export STRATA_UI_PAGED_EVENTS=1000000 STRATA_UI_TAIL_RATE=10000 ;;
    *) echo "test-ui: unknown argument $arg" >&2; exit 2 ;;
  esac
done

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  echo "test-ui: installing chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  echo "test-ui: installing nodejs and npm" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s tests/ui/package-lock.json tests/ui/node_modules/.package-lock.json 2>/dev/null \
  && ! (cd tests/ui && npm ls --silent >/dev/null 2>&1); then
  (cd tests/ui && npm ci --no-audit --no-fund --silent)
fi

default_strata_bin "$root"
case "$STRATA_BIN" in /*) ;; *) STRATA_BIN="$root/$STRATA_BIN" ;; esac
if [[ ! -x "$STRATA_BIN" ]]; then
  echo "test-ui: strata binary not found or not executable: $STRATA_BIN" >&2
  exit 1
fi
export STRATA_BIN
# The secure server's certificate is self-signed (--dev): the tests' own HTTP client
# accepts it, as the browser context does (ignoreHTTPSErrors).
export NODE_TLS_REJECT_UNAUTHORIZED=0
cd tests/ui
exec node --no-warnings --test --test-reporter=spec ui.test.mjs
