"""Soft delete (revivable) and tombstone (permanent).

The client turns Delete/Tombstone errors into exceptions by parsing the FailedPrecondition
message: "...WrongExpectedVersion... Stream: S, Expected version: N, Actual version: M" gives
WrongCurrentVersionError (NotFoundError when M is -1), and a message containing "is deleted"
gives StreamIsDeletedError.
"""

from __future__ import annotations

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)

from helpers import SUB_TIMEOUT, ids, new_event, new_events, read_until_caught_up, read_until_id


@pytest.fixture
def two(client, stream_name):
    events = new_events(2)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=events)
    return stream_name, events


# --- delete ------------------------------------------------------------------------------------


def test_delete_then_not_found(client, two):
    name, _ = two
    client.delete_stream(name, current_version=1)
    with pytest.raises(NotFoundError):
        client.get_stream(name)
    assert client.get_current_version(name) == StreamState.NO_STREAM


def test_delete_with_wrong_version(client, two):
    name, events = two
    with pytest.raises(WrongCurrentVersionError) as err:
        client.delete_stream(name, current_version=0)
    assert err.value.actual_version == 1
    assert err.value.expected_version == 0
    assert ids(client.get_stream(name)) == ids(events)


@pytest.mark.parametrize("version", [StreamState.ANY, StreamState.NO_STREAM, StreamState.EXISTS, 0])
def test_delete_missing_stream_is_not_found(client, stream_name, version):
    with pytest.raises(NotFoundError):
        client.delete_stream(stream_name, current_version=version)


def test_delete_with_any_twice(client, two):
    name, _ = two
    client.delete_stream(name, current_version=StreamState.ANY)
    client.delete_stream(name, current_version=StreamState.ANY)
    with pytest.raises(NotFoundError):
        client.get_stream(name)


def test_delete_deleted_stream_expecting_exists(client, two):
    name, _ = two
    client.delete_stream(name, current_version=StreamState.EXISTS)
    with pytest.raises(StreamIsDeletedError):
        client.delete_stream(name, current_version=StreamState.EXISTS)
    # Only soft-deleted: still revivable.
    revived = new_event("Revived")
    client.append_event(name, current_version=StreamState.NO_STREAM, event=revived)
    assert ids(client.get_stream(name)) == [revived.id]


def test_append_after_delete_with_no_stream_revives(client, two):
    name, _ = two
    client.delete_stream(name, current_version=1)
    # The revision numbering continues after the deleted events.
    with pytest.raises(WrongCurrentVersionError):
        client.append_events(name, current_version=0, events=[new_event()])
    revived = new_event("Revived")
    client.append_event(name, current_version=StreamState.NO_STREAM, event=revived)
    recorded = client.get_stream(name)
    assert ids(recorded) == [revived.id]
    assert recorded[0].stream_position == 2
    assert client.get_current_version(name) == 2

    more = new_events(2)
    client.append_events(name, current_version=2, events=more)
    assert ids(client.get_stream(name)) == ids([revived, *more])


def test_append_after_delete_with_last_revision_revives(client, two):
    name, _ = two
    client.delete_stream(name, current_version=StreamState.ANY)
    revived = new_event("Revived")
    client.append_events(name, current_version=1, events=[revived])
    recorded = client.get_stream(name)
    assert ids(recorded) == [revived.id]
    assert recorded[0].stream_position == 2

    # Delete again: only what was appended since is hidden.
    client.delete_stream(name, current_version=2)
    with pytest.raises(NotFoundError):
        client.get_stream(name)


def test_deleted_events_stay_in_all(fresh_client):
    client = fresh_client
    name = "py-deleted-in-all"
    events = new_events(2)
    client.append_events(name, current_version=StreamState.NO_STREAM, events=events)
    client.delete_stream(name, current_version=1)
    assert ids(r for r in client.read_all() if r.stream_name == name) == ids(events)


def test_subscription_sees_revived_stream(client, two):
    name, events = two
    client.delete_stream(name, current_version=1)
    sub = client.subscribe_to_stream(name, include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        assert read_until_caught_up(sub) == []
        revived = new_event("Revived")
        client.append_event(name, current_version=StreamState.NO_STREAM, event=revived)
        assert ids(read_until_id(sub, revived.id)) == [revived.id]
    finally:
        sub.stop()


# --- tombstone ---------------------------------------------------------------------------------


def test_tombstone_then_reads_fail(client, two):
    name, _ = two
    client.tombstone_stream(name, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(name)
    with pytest.raises(StreamIsDeletedError):
        client.get_current_version(name)


@pytest.mark.parametrize(
    "version", [StreamState.ANY, StreamState.NO_STREAM, StreamState.EXISTS, 1, 5]
)
def test_tombstone_then_batch_append_fails(client, two, version):
    name, _ = two
    client.tombstone_stream(name, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.append_events(name, current_version=version, events=[new_event()])


def test_tombstone_then_single_append_fails(client, two):
    name, _ = two
    client.tombstone_stream(name, current_version=StreamState.ANY)
    # The Append RPC answers FailedPrecondition ("... is deleted"); this client version maps it
    # to FailedPreconditionError rather than StreamIsDeletedError (as with KurrentDB).
    with pytest.raises((StreamIsDeletedError, FailedPreconditionError)) as err:
        client.append_event(name, current_version=StreamState.ANY, event=new_event())
    assert "deleted" in str(err.value).lower()
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(name)


def test_tombstone_twice(client, two):
    name, _ = two
    client.tombstone_stream(name, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        client.tombstone_stream(name, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        client.tombstone_stream(name, current_version=StreamState.ANY)


def test_delete_after_tombstone(client, two):
    name, _ = two
    client.tombstone_stream(name, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        client.delete_stream(name, current_version=StreamState.ANY)


def test_tombstone_with_wrong_version(client, two):
    name, events = two
    with pytest.raises(WrongCurrentVersionError) as err:
        client.tombstone_stream(name, current_version=0)
    assert err.value.actual_version == 1
    assert ids(client.get_stream(name)) == ids(events)


def test_tombstone_missing_stream_expecting_exists(client, stream_name):
    with pytest.raises(NotFoundError):
        client.tombstone_stream(stream_name, current_version=StreamState.EXISTS)
    # Nothing happened: the name is still usable.
    client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=new_event())


def test_tombstone_missing_stream_with_any(client, stream_name):
    client.tombstone_stream(stream_name, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.append_events(
            stream_name, current_version=StreamState.NO_STREAM, events=[new_event()]
        )
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(stream_name)


def test_tombstone_after_soft_delete(client, two):
    name, _ = two
    client.delete_stream(name, current_version=1)
    client.tombstone_stream(name, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(name)


def test_get_stream_metadata_after_tombstone(client, two):
    name, _ = two
    client.set_stream_metadata(name, metadata={"k": "v"})
    client.tombstone_stream(name, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream_metadata(name)
