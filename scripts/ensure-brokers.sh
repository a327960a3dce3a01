#!/usr/bin/env bash
# Makes sure the brokers the connector tests publish to answer: NATS with JetStream on
# 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672 (guest/guest). Installs them with apt-get
# and starts them when nothing answers (CI containers run as root). The connector tests also
# start a NATS server of their own, so `nats-server` must be on the PATH either way.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
wait_for() {
  for _ in $(seq 1 120); do
    answers "$1" && return 0
    sleep 0.5
  done
  echo "ensure-brokers: nothing answers on 127.0.0.1:$1" >&2
  exit 1
}
install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v nats-server >/dev/null 2>&1; then
  echo "ensure-brokers: installing nats-server" >&2
  install nats-server
fi
if ! answers 4222; then
  echo "ensure-brokers: starting nats-server with JetStream" >&2
  store="${TMPDIR:-/tmp}/strata-nats"
  mkdir -p "$store"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/server.log" 2>&1 &
  wait_for 4222
fi

if ! answers 5672; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "ensure-brokers: installing rabbitmq-server" >&2
    install rabbitmq-server
  fi
  echo "ensure-brokers: starting rabbitmq-server" >&2
  service rabbitmq-server start >/dev/null 2>&1 || rabbitmq-server -detached
  wait_for 5672
fi
