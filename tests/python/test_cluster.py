"""A cluster of three `strata serve` nodes on one PostgreSQL schema (docs/CLUSTER.md), driven
by the official Python client given every node as a gossip seed: it finds the leader, and
after the leader is SIGKILLed it follows the new one by itself (the application retries
the call that failed, as KurrentDB's clients expect).

Needs PostgreSQL at $STRATA_TEST_POSTGRES_URL whatever STRATA_TEST_STORE says: a cluster
exists only there. `.ci/run` starts PostgreSQL, so an unreachable database fails the test
rather than skipping it.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import KurrentDBClientError
from kurrentdbclient.gossip import NODE_STATE_LEADER

import conftest
from conftest import POSTGRES_URL, StrataServer

FAILOVER_TIMEOUT = 30.0


def _node(tmp_path_factory: pytest.TempPathFactory, schema: str) -> StrataServer:
    """A server on the shared `schema` (dropped at the end of the run with the others)."""
    server = StrataServer(tmp_path_factory.mktemp("strata") / "data")
    if server.schema is not None:
        conftest._schemas.discard(server.schema)
    server.schema = schema
    conftest._schemas.add(schema)
    return server


def _leader_port(client: KurrentDBClient, ports: set[int]) -> int | None:
    """The port of the live leader among `ports`, as gossip tells."""
    try:
        members = client.read_gossip()
    except KurrentDBClientError:
        return None
    leaders = [m.port for m in members if m.state == NODE_STATE_LEADER and m.port in ports]
    return leaders[0] if len(leaders) == 1 else None


def _retry(call, timeout: float = FAILOVER_TIMEOUT):
    """Calls `call` until it answers: the application's retry after a failover."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KurrentDBClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_seeds_find_the_leader_and_the_client_follows_a_failover(tmp_path_factory):
    schema = f"strata_test_{uuid.uuid4().hex}"
    nodes = [_node(tmp_path_factory, schema).start() for _ in range(3)]
    try:
        ports = {node.port for node in nodes}
        probe = nodes[0].client("127.0.0.1")
        try:
            assert conftest.wait_until(
                lambda: _leader_port(probe, ports) is not None, timeout=20
            ), "no leader elected"
            leader = _leader_port(probe, ports)
        finally:
            probe.close()
        # The leader is the last seed: discovery, not luck, finds it.
        followers = [node.port for node in nodes if node.port != leader]
        seeds = ",".join(f"127.0.0.1:{port}" for port in [*followers, leader])
        client = KurrentDBClient(uri=f"kurrentdb://{seeds}?tls=false")
        try:
            assert client.connection_target == f"127.0.0.1:{leader}"
            stream = f"orders-{uuid.uuid4()}"
            client.append_to_stream(
                stream,
                current_version=StreamState.NO_STREAM,
                events=[NewEvent(type="Ordered", data=b"{}")],
            )
            # Leader-only: persistent subscriptions.
            client.create_subscription_to_stream("billing", stream, from_end=False)
            assert client.get_subscription_info("billing", stream).group_name == "billing"

            old_leader = next(node for node in nodes if node.port == leader)
            old_leader.proc.kill()
            old_leader.proc.wait()
            survivors = ports - {leader}

            info = _retry(lambda: client.get_subscription_info("billing", stream))
            assert info.group_name == "billing"
            new_target = client.connection_target
            host, port = new_target.rsplit(":", 1)
            assert int(port) in survivors, new_target
            assert _leader_port(client, survivors) == int(port), new_target
            # Appends go on through the client too, and the new leader's group sees them.
            _retry(
                lambda: client.append_to_stream(
                    stream,
                    current_version=StreamState.ANY,
                    events=[NewEvent(type="Ordered", data=b"{}")],
                )
            )
            assert len(client.get_stream(stream)) == 2
        finally:
            client.close()
    finally:
        for node in nodes:
            node.stop()
