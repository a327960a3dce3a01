#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432, user postgres with trust auth, and has a
# `test` database (what the PostgreSQL tests expect). Installs and starts it with apt-get
# when nothing answers (CI containers run as root).
set -euo pipefail

host=127.0.0.1
port=5432

ready() { pg_isready -q -h "$host" -p "$port" >/dev/null 2>&1; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ready; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-postgres: installing PostgreSQL" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  conf="/etc/postgresql/$version/main"
  # Trust on loopback only: a throwaway test server.
  cat >"$conf/pg_hba.conf" <<'HBA'
local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
HBA
  echo "ensure-postgres: starting PostgreSQL $version" >&2
  pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main reload
  for _ in $(seq 1 60); do
    ready && break
    sleep 0.5
  done
  if ! ready; then
    echo "ensure-postgres: PostgreSQL does not answer on $host:$port" >&2
    exit 1
  fi
fi

if ! psql -h "$host" -p "$port" -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" postgres | grep -q 1; then
  createdb -h "$host" -p "$port" -U postgres test
fi
echo "ensure-postgres: PostgreSQL answers on $host:$port (database test)" >&2
