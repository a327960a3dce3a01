"""The server process: addresses, discovery, clean shutdown, restart, one server per data dir."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from kurrentdbclient import KurrentDBClient, StreamState

from helpers import ids, new_events, unique


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_serves_ipv4_and_ipv6(server, host):
    client = server.client(host)
    try:
        name = unique("addr")
        events = new_events(2)
        client.append_events(name, current_version=StreamState.NO_STREAM, events=events)
        assert ids(client.get_stream(name)) == ids(events)
    finally:
        client.close()


def test_gossip_one_leader(client):
    members = client.read_gossip()
    assert len(members) == 1
    assert members[0].state == "NODE_STATE_LEADER"
    assert members[0].port > 0


def test_discover_connection_string(server):
    client = KurrentDBClient(uri=f"kurrentdb+discover://localhost:{server.port}?tls=false")
    try:
        name = unique("discover")
        events = new_events(1)
        client.append_events(name, current_version=StreamState.NO_STREAM, events=events)
        assert ids(client.get_stream(name)) == ids(events)
    finally:
        client.close()


def test_esdb_scheme(server):
    client = KurrentDBClient(uri=f"esdb://127.0.0.1:{server.port}?tls=false")
    try:
        assert client.get_commit_position() >= 0
    finally:
        client.close()


def test_sigterm_stops_cleanly_and_data_survives_restart(server_factory):
    first = server_factory().start()
    client = first.client()
    name = unique("durable")
    events = new_events(5)
    try:
        client.append_events(name, current_version=StreamState.NO_STREAM, events=events)
        before = [(r.id, r.commit_position) for r in client.get_stream(name)]
        head = client.get_commit_position()
    finally:
        client.close()

    t0 = time.monotonic()
    status = first.stop()
    assert status == 0, f"exit status {status} after SIGTERM\nstderr:\n{first.stderr()}"
    assert time.monotonic() - t0 < 5

    second = server_factory(first.data_dir).start()
    client = second.client()
    try:
        assert [(r.id, r.commit_position) for r in client.get_stream(name)] == before
        assert client.get_commit_position() == head
        more = new_events(1)
        p = client.append_events(name, current_version=4, events=more)
        assert p > head
    finally:
        client.close()


@pytest.mark.skipif(
    os.environ.get("STRATA_TEST_STORE") == "postgres",
    reason="servers on PostgreSQL may share a schema: that is how nodes scale out",
)
def test_second_server_on_same_data_dir_is_refused(server_factory):
    first = server_factory().start()
    second = server_factory(first.data_dir)
    result = subprocess.run(second.args, capture_output=True, timeout=20)
    assert result.returncode != 0, "a second server on the same data directory started"
    assert b"ready on" not in result.stdout
    message = result.stderr.decode(errors="replace").lower()
    assert message.strip(), "no message on stderr"
    assert "lock" in message or "already" in message or "in use" in message, message

    # The first one is unaffected.
    client = first.client()
    try:
        name = unique("still")
        client.append_events(name, current_version=StreamState.NO_STREAM, events=new_events(1))
    finally:
        client.close()
