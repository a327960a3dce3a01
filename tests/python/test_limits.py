"""The server's bounds as the Python client sees them."""

from __future__ import annotations

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import ServiceUnavailableError

from helpers import new_events, unique


def test_a_connection_over_the_limit_fails_with_the_servers_reason(server_factory):
    srv = server_factory(extra_args=("--max-connections", "1")).start()
    first = srv.client("127.0.0.1")
    try:
        first.append_events(
            unique("held"), current_version=StreamState.ANY, events=new_events(1)
        )
        # Another target name: grpcio shares one connection between channels to one target.
        with pytest.raises(ServiceUnavailableError) as raised:
            second = srv.client("localhost")
            try:
                second.append_events(
                    unique("refused"), current_version=StreamState.ANY, events=new_events(1)
                )
            finally:
                second.close()
        assert "limit of 1 open connections" in str(raised.value), str(raised.value)
    finally:
        first.close()
