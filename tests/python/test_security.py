"""Users and ACLs with the official Python client over TLS: `strata serve --dev` (a
self-signed certificate in the data directory, authentication on), users made with
`strata user add`, and each user's own client."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AccessDeniedError, UnauthenticatedError

from conftest import USE_POSTGRES, StrataServer, strata_bin
from helpers import new_event, unique

pytestmark = pytest.mark.skipif(
    USE_POSTGRES, reason="--dev keeps its certificate in --data-dir (the Rust tests cover PostgreSQL)"
)

REFUSED = (AccessDeniedError, UnauthenticatedError)


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory):
    server = StrataServer(tmp_path_factory.mktemp("secure") / "data", ("--dev",)).start()
    yield server
    server.stop()


def ca_file(server: StrataServer) -> str:
    return str(server.data_dir / "dev-tls" / "node.crt")


def client_as(server: StrataServer, login: str, password: str) -> KurrentDBClient:
    return KurrentDBClient(
        uri=f"kurrentdb://{login}:{password}@localhost:{server.port}?tlsCaFile={ca_file(server)}"
    )


def add_user(server: StrataServer, login: str, password: str, *groups: str) -> None:
    args = [strata_bin(), "user", "add", login, "--password", password]
    for group in groups:
        args += ["--group", group]
    url = f"kurrentdb://admin:changeit@localhost:{server.port}?tlsCaFile={ca_file(server)}"
    subprocess.run([*args, "--server", url], check=True, capture_output=True)


def set_acl(admin: KurrentDBClient, stream: str, acl: dict) -> None:
    admin.append_to_stream(
        f"$${stream}",
        current_version=StreamState.ANY,
        events=[NewEvent(type="$metadata", data=json.dumps({"$acl": acl}).encode())],
    )


def test_acls_decide_per_user_and_role(secure_server):
    reader, outsider = unique("reader"), unique("outsider")
    add_user(secure_server, reader, "pw-r", "auditors")
    add_user(secure_server, outsider, "pw-o")
    admin = client_as(secure_server, "admin", "changeit")
    stream = unique("audited")
    admin.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[new_event()])
    set_acl(admin, stream, {"$r": "auditors", "$w": []})

    as_reader = client_as(secure_server, reader, "pw-r")
    assert len(as_reader.get_stream(stream)) == 1
    with pytest.raises(REFUSED):
        as_reader.append_to_stream(stream, current_version=StreamState.ANY, events=[new_event()])
    with pytest.raises(REFUSED):
        client_as(secure_server, outsider, "pw-o").get_stream(stream)
    # Admins pass every ACL.
    admin.append_to_stream(stream, current_version=StreamState.ANY, events=[new_event()])
    assert len(admin.get_stream(stream)) == 2


def test_missing_and_wrong_credentials_write_nothing(secure_server):
    stream = unique("guarded")
    # (The Python client refuses a TLS connection string without credentials.)
    for client in (
        client_as(secure_server, "admin", "wrong"),
        client_as(secure_server, "badlogin", "badpass"),
    ):
        with pytest.raises(REFUSED):
            client.append_to_stream(
                stream, current_version=StreamState.ANY, events=[new_event()]
            )
    admin = client_as(secure_server, "admin", "changeit")
    # Expecting no stream succeeds only if none of the refused appends wrote anything.
    admin.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[new_event()])
    assert len(admin.get_stream(stream)) == 1


def test_reading_all_leaves_out_streams_the_user_may_not_read(secure_server):
    login = unique("ada")
    add_user(secure_server, login, "pw")
    admin = client_as(secure_server, "admin", "changeit")
    hidden, visible = unique("hidden"), unique("visible")
    for stream in (hidden, visible):
        admin.append_to_stream(stream, current_version=StreamState.ANY, events=[new_event()])
    set_acl(admin, hidden, {"$r": "nobody-" + uuid.uuid4().hex, "$mr": []})
    set_acl(admin, "$all", {"$r": "$all"})
    ada = client_as(secure_server, login, "pw")  # kept: a collected client cancels its reads
    streams = {event.stream_name for event in ada.read_all()}
    assert visible in streams
    assert hidden not in streams
    assert not any(name.startswith("$user") for name in streams)
    assert hidden in {event.stream_name for event in admin.read_all()}
