#!/usr/bin/env bash
# Black-box tests of `strata serve` with the official Python client (kurrentdbclient).
#
# Env:
#   STRATA_VENV   venv to create/reuse  (default: $HOME/.cache/strata-venv)
#   STRATA_BIN    strata binary to test (default: ${CARGO_TARGET_DIR:-target}/debug/strata,
#                 built with `cargo build --bin strata` first)
# Extra arguments are passed to pytest (e.g. -k subscribe, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/python-env.sh
source "$root/scripts/lib/python-env.sh"

venv="${STRATA_VENV:-$HOME/.cache/strata-venv}"
req="$root/tests/python/requirements.txt"

ensure_venv "$venv" "$req"

default_strata_bin "$root"
case "$STRATA_BIN" in /*) ;; *) STRATA_BIN="$root/$STRATA_BIN" ;; esac
if [[ ! -x "$STRATA_BIN" ]]; then
  echo "test-python: strata binary not found or not executable: $STRATA_BIN" >&2
  exit 1
fi
export STRATA_BIN
export PYTHONDONTWRITEBYTECODE=1  # keep tests/python free of __pycache__
# grpcio's fork handlers can abort a child between fork and exec (seen as
# "epoll_wait error: Bad file descriptor" from a server that never started).
export GRPC_ENABLE_FORK_SUPPORT=false

# A temp dir of this run's own: pytest's shared /tmp/pytest-of-USER is pruned by any other
# pytest run on the machine, under this one's feet.
basetemp="$(mktemp -d "${TMPDIR:-/tmp}/strata-pytest.XXXXXX")"
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp "$basetemp/tmp" "$root/tests/python" "$@"
rc=$?
set -e
rm -rf "$basetemp"
if [[ $rc -eq 5 ]]; then
  echo "test-python: pytest collected no tests" >&2
  exit 1
fi
exit $rc
