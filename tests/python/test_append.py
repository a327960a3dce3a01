"""Appends: every expected-position kind, conflicts, idempotence, round trips, sizes.

kurrentdbclient sends one NewEvent through the `Append` RPC and a list through `BatchAppend`,
so every behaviour is checked through both (the `rpc` parameter).
"""

from __future__ import annotations

import datetime
import json
import os

import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    KurrentDBClientError,
    NotFoundError,
    WrongCurrentVersionError,
)

from helpers import assert_same_events, ids, new_event, new_events

RPCS = ["append", "batch_append"]


def append(client: KurrentDBClient, rpc: str, stream: str, version, events: list[NewEvent]):
    """Append through the given RPC: `append` needs exactly one event."""
    if rpc == "append":
        assert len(events) == 1
        return client.append_event(stream, current_version=version, event=events[0])
    return client.append_events(stream, current_version=version, events=events)


def batch(rpc: str, n: int = 2) -> list[NewEvent]:
    return new_events(1 if rpc == "append" else n)


@pytest.mark.parametrize("rpc", RPCS)
def test_no_stream_creates_then_conflicts(client, stream_name, rpc):
    first = batch(rpc)
    pos = append(client, rpc, stream_name, StreamState.NO_STREAM, first)
    assert pos > 0
    assert client.get_current_version(stream_name) == len(first) - 1

    with pytest.raises(WrongCurrentVersionError) as err:
        append(client, rpc, stream_name, StreamState.NO_STREAM, batch(rpc))
    assert err.value.actual_version == len(first) - 1
    assert_same_events(client.get_stream(stream_name), first)


@pytest.mark.parametrize("rpc", RPCS)
def test_exact_revision(client, stream_name, rpc):
    first = batch(rpc)
    append(client, rpc, stream_name, StreamState.NO_STREAM, first)
    last = len(first) - 1

    second = batch(rpc)
    append(client, rpc, stream_name, last, second)
    last += len(second)
    assert client.get_current_version(stream_name) == last

    for wrong in (0 if last > 0 else 1, last + 1, last + 100):
        with pytest.raises(WrongCurrentVersionError) as err:
            append(client, rpc, stream_name, wrong, batch(rpc))
        assert err.value.actual_version == last, f"expected {wrong}"
    assert_same_events(client.get_stream(stream_name), first + second)


@pytest.mark.parametrize("rpc", RPCS)
def test_exact_revision_on_missing_stream(client, stream_name, rpc):
    with pytest.raises(WrongCurrentVersionError) as err:
        append(client, rpc, stream_name, 0, batch(rpc))
    assert err.value.actual_version == StreamState.NO_STREAM
    with pytest.raises(NotFoundError):
        client.get_stream(stream_name)


def test_exact_revision_on_missing_stream_message(client, stream_name):
    # The client builds this message from `current_no_stream` in the Append response body.
    with pytest.raises(WrongCurrentVersionError) as err:
        client.append_event(stream_name, current_version=1, event=new_event())
    assert err.value.args[0] == f"Stream {stream_name!r} does not exist"


@pytest.mark.parametrize("rpc", RPCS)
def test_any(client, stream_name, rpc):
    first = batch(rpc)
    p1 = append(client, rpc, stream_name, StreamState.ANY, first)  # stream does not exist
    second = batch(rpc)
    p2 = append(client, rpc, stream_name, StreamState.ANY, second)  # stream exists
    assert p2 > p1
    assert_same_events(client.get_stream(stream_name), first + second)


@pytest.mark.parametrize("rpc", RPCS)
def test_exists(client, stream_name, rpc):
    with pytest.raises(WrongCurrentVersionError) as err:
        append(client, rpc, stream_name, StreamState.EXISTS, batch(rpc))
    assert err.value.actual_version == StreamState.NO_STREAM
    with pytest.raises(NotFoundError):
        client.get_stream(stream_name)

    first = batch(rpc)
    append(client, rpc, stream_name, StreamState.NO_STREAM, first)
    second = batch(rpc)
    append(client, rpc, stream_name, StreamState.EXISTS, second)
    assert_same_events(client.get_stream(stream_name), first + second)


@pytest.mark.parametrize("rpc", RPCS)
def test_commit_positions_increase_and_match_reads(client, stream_name, rpc):
    positions = []
    appended: list[NewEvent] = []
    for i in range(3):
        events = batch(rpc, n=3)
        version = StreamState.NO_STREAM if i == 0 else len(appended) - 1
        positions.append(append(client, rpc, stream_name, version, events))
        appended += events
    assert positions == sorted(positions) and len(set(positions)) == 3

    recorded = client.get_stream(stream_name)
    assert_same_events(recorded, appended)
    # The append answers the position of its last event.
    per_append = len(appended) // 3
    for i, pos in enumerate(positions):
        assert recorded[(i + 1) * per_append - 1].commit_position == pos
    for r in recorded:
        assert r.commit_position == r.prepare_position
    cps = [r.commit_position for r in recorded]
    assert cps == sorted(cps) and len(set(cps)) == len(cps)


@pytest.mark.parametrize("rpc", RPCS)
def test_round_trip_of_ids_types_data_metadata(client, stream_name, rpc):
    events = [
        NewEvent(
            type="Shipped.v2",
            data=json.dumps({"order": 7, "items": ["a", "b"], "ü": "✓"}).encode(),
            metadata=json.dumps({"correlation": "c-1"}).encode(),
        ),
        NewEvent(
            type="binary-blob",
            data=os.urandom(300) + b"\x00\xff",
            metadata=b"\x00\x01 not json \xfe",
            content_type="application/octet-stream",
        ),
        NewEvent(type="EmptyOne", data=b"", metadata=b""),
    ]
    if rpc == "append":
        for i, e in enumerate(events):
            version = StreamState.NO_STREAM if i == 0 else i - 1
            append(client, rpc, stream_name, version, [e])
    else:
        append(client, rpc, stream_name, StreamState.NO_STREAM, events)

    recorded = client.get_stream(stream_name)
    assert_same_events(recorded, events)
    assert [r.content_type for r in recorded] == [
        "application/json",
        "application/octet-stream",
        "application/json",
    ]
    assert [r.stream_name for r in recorded] == [stream_name] * 3
    assert [r.stream_position for r in recorded] == [0, 1, 2]


@pytest.mark.parametrize("rpc", RPCS)
def test_recorded_at_is_now(client, stream_name, rpc):
    before = datetime.datetime.now(datetime.timezone.utc)
    append(client, rpc, stream_name, StreamState.NO_STREAM, batch(rpc))
    after = datetime.datetime.now(datetime.timezone.utc)
    for r in client.get_stream(stream_name):
        assert r.recorded_at is not None, "no `created` ticks in the event's metadata"
        assert r.recorded_at.tzinfo is not None
        slack = datetime.timedelta(seconds=2)
        assert before - slack <= r.recorded_at <= after + slack, (before, r.recorded_at, after)


def test_unicode_stream_name(client):
    name = "py-ünï-çødé-流-" + os.urandom(4).hex()
    event = new_event()
    client.append_event(name, current_version=StreamState.NO_STREAM, event=event)
    (recorded,) = client.get_stream(name)
    assert recorded.stream_name == name
    assert recorded.id == event.id


# --- idempotence -------------------------------------------------------------------------------


def test_idempotent_resend_append(client, stream_name):
    e1, e2, e3 = new_events(3)
    p1 = client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=e1)
    p2 = client.append_event(stream_name, current_version=0, event=e2)
    p3 = client.append_event(stream_name, current_version=1, event=e3)

    assert client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=e1) == p1
    assert client.append_event(stream_name, current_version=0, event=e2) == p2
    assert client.append_event(stream_name, current_version=1, event=e3) == p3
    assert client.append_event(stream_name, current_version=StreamState.ANY, event=e3) == p3
    assert ids(client.get_stream(stream_name)) == ids([e1, e2, e3])


def test_idempotent_resend_batch_append(client, stream_name):
    e1, e2, e3 = new_events(3)
    p1 = client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=[e1, e2])
    p2 = client.append_events(stream_name, current_version=1, events=[e3])

    assert (
        client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=[e1, e2])
        == p1
    )
    assert client.append_events(stream_name, current_version=1, events=[e3]) == p2
    assert client.append_events(stream_name, current_version=StreamState.ANY, events=[e3]) == p2
    assert ids(client.get_stream(stream_name)) == ids([e1, e2, e3])


def test_idempotent_resend_across_rpcs(client, stream_name):
    event = new_event()
    p = client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=[event])
    assert client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=event) == p
    assert ids(client.get_stream(stream_name)) == [event.id]


def test_resend_mixed_with_new_event_conflicts(client, stream_name):
    # KurrentDB: a re-send that only partly matches what is stored conflicts and writes nothing.
    e1, e2, e3, e4 = new_events(4)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=[e1, e2, e3])
    with pytest.raises(WrongCurrentVersionError):
        client.append_events(stream_name, current_version=0, events=[e2, e3, e4])
    assert ids(client.get_stream(stream_name)) == ids([e1, e2, e3])


# --- sizes -------------------------------------------------------------------------------------


def test_large_batch(client, stream_name):
    events = new_events(1000, "Bulk")
    pos = client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=events)
    recorded = client.get_stream(stream_name)
    assert ids(recorded) == ids(events)
    assert [r.stream_position for r in recorded] == list(range(1000))
    assert recorded[-1].commit_position == pos


@pytest.mark.parametrize("rpc", RPCS)
def test_five_mib_event_round_trips(client, stream_name, rpc):
    # Larger than gRPC's usual 4 MiB default message limit; KurrentDB accepts events up to 16 MiB.
    event = NewEvent(
        type="Big", data=os.urandom(5 * 1024 * 1024), content_type="application/octet-stream"
    )
    append(client, rpc, stream_name, StreamState.NO_STREAM, [event])
    (recorded,) = client.get_stream(stream_name)
    assert recorded.id == event.id
    assert recorded.data == event.data


@pytest.mark.parametrize("rpc", RPCS)
def test_oversize_event_is_refused_and_nothing_written(server, client, stream_name, rpc):
    event = NewEvent(
        type="TooBig",
        data=os.urandom(16 * 1024 * 1024 + 1024),
        content_type="application/octet-stream",
    )
    with pytest.raises(KurrentDBClientError):
        append(client, rpc, stream_name, StreamState.ANY, [event])
    with pytest.raises(NotFoundError):
        client.get_stream(stream_name)
    assert server.proc.poll() is None, "server died"
    # Still serving.
    client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=new_event())
