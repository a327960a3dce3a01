"""Reads of one stream and of $all: directions, limits, start positions, filters."""

from __future__ import annotations

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import NotFoundError

from helpers import ids, is_security_stream, new_event, new_events, unique, without_users

# --- one stream --------------------------------------------------------------------------------


@pytest.fixture
def ten(client, stream_name):
    events = new_events(10)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=events)
    return stream_name, events


def test_read_forwards(client, ten):
    name, events = ten
    recorded = client.get_stream(name)
    assert ids(recorded) == ids(events)
    assert [r.stream_position for r in recorded] == list(range(10))


def test_read_backwards(client, ten):
    name, events = ten
    recorded = client.get_stream(name, backwards=True)
    assert ids(recorded) == ids(reversed(events))
    assert [r.stream_position for r in recorded] == list(range(9, -1, -1))


def test_read_with_limit(client, ten):
    name, events = ten
    assert ids(client.get_stream(name, limit=3)) == ids(events[:3])
    assert ids(client.get_stream(name, backwards=True, limit=3)) == ids(events[:-4:-1])
    assert ids(client.get_stream(name, limit=100)) == ids(events)
    assert ids(client.get_stream(name, limit=1)) == ids(events[:1])


def test_read_from_position(client, ten):
    name, events = ten
    # Forwards and backwards reads both include the start revision.
    assert ids(client.get_stream(name, stream_position=4)) == ids(events[4:])
    assert ids(client.get_stream(name, stream_position=4, limit=2)) == ids(events[4:6])
    assert ids(client.get_stream(name, stream_position=4, backwards=True)) == ids(events[4::-1])
    assert ids(client.get_stream(name, stream_position=4, backwards=True, limit=2)) == ids(
        events[4:2:-1]
    )
    assert ids(client.get_stream(name, stream_position=0, backwards=True)) == ids(events[:1])
    assert ids(client.get_stream(name, stream_position=9)) == ids(events[9:])


def test_read_past_the_end_is_empty_not_missing(client, ten):
    name, _ = ten
    assert client.get_stream(name, stream_position=10) == ()
    assert client.get_stream(name, stream_position=1000) == ()


def test_read_stream_iterator(client, ten):
    name, events = ten
    with client.read_stream(name, limit=5) as response:
        assert ids(response) == ids(events[:5])


def test_read_missing_stream(client):
    name = unique("missing")
    with pytest.raises(NotFoundError):
        client.get_stream(name)
    with pytest.raises(NotFoundError):
        list(client.read_stream(name, backwards=True))
    assert client.get_current_version(name) == StreamState.NO_STREAM


def test_read_does_not_mix_streams(client):
    a, b = unique("a"), unique("b")
    ea, eb = new_events(3), new_events(3)
    for x, y in zip(ea, eb, strict=True):
        client.append_event(a, current_version=StreamState.ANY, event=x)
        client.append_event(b, current_version=StreamState.ANY, event=y)
    assert ids(client.get_stream(a)) == ids(ea)
    assert ids(client.get_stream(b)) == ids(eb)
    assert client.get_current_version(a) == 2


# --- $all --------------------------------------------------------------------------------------


@pytest.fixture
def populated(fresh_client):
    """A fresh server holding exactly these events, in this order in $all."""
    s1, s2 = unique("order"), unique("invoice")
    e = [
        new_event("OrderCreated"),
        new_event("OrderUpdated"),
        new_event("OrderDeleted"),
        new_event("InvoiceCreated"),
        new_event("InvoiceUpdated"),
        new_event("InvoiceDeleted"),
    ]
    p1 = fresh_client.append_events(s1, current_version=StreamState.NO_STREAM, events=e[:3])
    p2 = fresh_client.append_events(s2, current_version=StreamState.NO_STREAM, events=e[3:])
    return fresh_client, s1, s2, e, p1, p2


def test_read_all_forwards_and_backwards(populated):
    client, s1, s2, e, _, p2 = populated
    forwards = list(client.read_all())
    assert ids(forwards) == ids(e)
    assert [r.stream_name for r in forwards] == [s1] * 3 + [s2] * 3
    positions = [r.commit_position for r in forwards]
    assert positions == sorted(positions) and len(set(positions)) == 6
    assert all(r.commit_position == r.prepare_position for r in forwards)
    assert positions[-1] == p2

    backwards = list(client.read_all(backwards=True))
    assert ids(backwards) == ids(reversed(e))


def test_read_all_without_filter(populated):
    client, _, _, e, _, _ = populated
    everything = list(client.read_all(filter_exclude=()))
    # A new store begins with the events that create the built-in users (the clients'
    # default filter leaves them out, as their types begin with "$").
    assert ids(everything[-6:]) == ids(e)
    created = {r.stream_name for r in everything[:-6] if r.type == "$UserCreated"}
    assert created == {"$user-admin", "$user-ops"}
    assert all(is_security_stream(r.stream_name) for r in everything[:-6])


def test_read_all_limit(populated):
    client, _, _, e, _, _ = populated
    assert ids(client.read_all(limit=2)) == ids(e[:2])
    assert ids(client.read_all(backwards=True, limit=2)) == ids(e[:-3:-1])


def test_read_all_from_commit_position(populated):
    client, _, _, e, p1, p2 = populated
    # p1 is the position of e[2] (the last event of the first append), p2 that of e[5].
    # Forwards from a position includes the event there; backwards excludes it (KurrentDB).
    assert ids(client.read_all(commit_position=p1)) == ids(e[2:])
    assert ids(client.read_all(commit_position=p2)) == ids(e[5:])
    assert ids(client.read_all(commit_position=p1, limit=2)) == ids(e[2:4])
    assert ids(client.read_all(commit_position=p1, backwards=True)) == ids(e[1::-1])
    assert ids(client.read_all(commit_position=p2, backwards=True)) == ids(e[4::-1])

    all_positions = [r.commit_position for r in client.read_all()]
    for i, pos in enumerate(all_positions):
        assert ids(client.read_all(commit_position=pos)) == ids(e[i:])


def test_read_all_from_commit_position_zero(populated):
    client, _, _, e, _, _ = populated
    assert ids(client.read_all(commit_position=0)) == ids(e)


def test_get_commit_position(populated):
    client, _, s2, _, _, p2 = populated
    assert client.get_commit_position() == p2
    assert client.get_commit_position(filter_exclude=[".*"]) == 0
    p3 = client.append_event(s2, current_version=StreamState.ANY, event=new_event())
    assert p3 > p2
    assert client.get_commit_position() == p3


def test_get_commit_position_of_empty_store(fresh_client):
    assert fresh_client.get_commit_position() == 0
    assert list(fresh_client.read_all()) == []
    assert list(fresh_client.read_all(backwards=True)) == []


# --- $all filters ------------------------------------------------------------------------------


def test_filter_include_event_types(populated):
    client, _, _, e, _, _ = populated
    assert ids(client.read_all(filter_include=("OrderCreated",))) == ids(e[:1])
    assert ids(client.read_all(filter_include=("Invoice.*",))) == ids(e[3:])
    # Anchored past "$": the built-in users' "$UserCreated" ends in "Created" too.
    assert ids(client.read_all(filter_include=("[^$].*Created",))) == ids([e[0], e[3]])
    assert ids(client.read_all(filter_include=("OrderCreated", "InvoiceDeleted"))) == ids(
        [e[0], e[5]]
    )
    assert ids(client.read_all(filter_include=("Invoice.*",), backwards=True)) == ids(e[:2:-1])
    assert ids(client.read_all(filter_include=("Invoice.*",), limit=2)) == ids(e[3:5])


def test_filter_exclude_event_types(populated):
    client, _, _, e, _, _ = populated
    # An explicit exclude replaces the client's default one: "$" types (the built-in users'
    # events) are named as well.
    system = r"\$.*"
    assert ids(client.read_all(filter_exclude=("Order.*", system))) == ids(e[3:])
    assert ids(client.read_all(filter_exclude=(".*Updated", ".*Deleted", system))) == ids(
        [e[0], e[3]]
    )
    assert ids(client.read_all(filter_exclude=(".*",))) == []


def test_filter_include_stream_names(populated):
    client, s1, s2, e, _, _ = populated
    assert ids(client.read_all(filter_include=(s1,), filter_by_stream_name=True)) == ids(e[:3])
    assert ids(client.read_all(filter_include=("invoice-.*",), filter_by_stream_name=True)) == ids(
        e[3:]
    )
    # Event types are not stream names.
    assert list(client.read_all(filter_include=("OrderCreated",), filter_by_stream_name=True)) == []


def test_filter_exclude_stream_names(populated):
    client, s1, s2, e, _, _ = populated
    # The built-in users' streams begin with "$": excluded by name as well.
    users = r"\$.*"
    assert ids(client.read_all(filter_exclude=(s1, users), filter_by_stream_name=True)) == ids(
        e[3:]
    )
    assert ids(
        client.read_all(filter_exclude=("order-.*", users), filter_by_stream_name=True)
    ) == ids(e[3:])


def test_filter_by_prefix(populated):
    client, s1, _, e, _, _ = populated
    assert ids(
        client.read_all(
            filter_include=("order-",), filter_by_stream_name=True, filter_by_prefix=True
        )
    ) == ids(e[:3])
    assert ids(client.read_all(filter_include=("Invoice",), filter_by_prefix=True)) == ids(e[3:])
    assert ids(
        client.read_all(filter_include=("OrderC", "InvoiceD"), filter_by_prefix=True)
    ) == ids([e[0], e[5]])


def test_filter_with_commit_position(populated):
    client, _, _, e, p1, _ = populated
    # p1 is e[2]'s position; forwards includes it.
    assert ids(client.read_all(commit_position=p1, filter_include=(".*Deleted",))) == ids(
        [e[2], e[5]]
    )


def test_default_filter_hides_system_events_in_read_all(populated):
    client, s1, _, e, _, _ = populated
    client.set_stream_metadata(s1, metadata={"$maxCount": 100})
    tail = new_event("AfterMeta")
    client.append_event(s1, current_version=StreamState.ANY, event=tail)

    # Default read_all() uses the client's exclude filter: no "$metadata" event.
    default = list(client.read_all())
    assert ids(default) == ids(e + [tail])
    # Without a filter the metadata event is there, in stream "$$<name>".
    everything = without_users(client.read_all(filter_exclude=()))
    meta = [r for r in everything if r.type == "$metadata"]
    assert len(meta) == 1, [(r.stream_name, r.type) for r in everything]
    assert meta[0].stream_name == f"$${s1}"
    assert ids(r for r in everything if r.type != "$metadata") == ids(e + [tail])
