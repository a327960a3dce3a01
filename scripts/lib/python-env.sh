# Shared by the scripts that drive a real `strata serve` from Python (sourced, not run).

# ensure_venv VENV REQUIREMENTS: creates VENV if needed and installs REQUIREMENTS, again only
# when they changed since the last successful install.
ensure_venv() {
  local venv="$1" req="$2"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.strata-requirements"
  if ! cmp -s "$req" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
}

# default_strata_bin ROOT: sets STRATA_BIN, when unset, to the debug build under the cargo
# target dir, (re)building it first: a stale binary would test old code.
default_strata_bin() {
  local root="$1"
  if [[ -z "${STRATA_BIN:-}" ]]; then
    local target="${CARGO_TARGET_DIR:-target}"
    case "$target" in /*) ;; *) target="$root/$target" ;; esac
    STRATA_BIN="$target/debug/strata"
    cargo build --quiet --bin strata
  fi
}
