"""Stream metadata through `$$<stream>`: round trip, versions, and the keys reads honour."""

from __future__ import annotations

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import WrongCurrentVersionError

from helpers import ids, new_event, new_events


def test_metadata_of_stream_without_any(client, stream_name):
    assert client.get_stream_metadata(stream_name) == ({}, StreamState.NO_STREAM)
    client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=new_event())
    assert client.get_stream_metadata(stream_name) == ({}, StreamState.NO_STREAM)


def test_metadata_round_trip_and_versions(client, stream_name):
    client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=new_event())
    meta = {
        "foo": "bar",
        "nested": {"list": [1, 2, 3], "ü": "✓"},
        "$acl": {"$r": "$all", "$w": "$admins"},
        "$cacheControl": 60,
    }
    client.set_stream_metadata(stream_name, metadata=meta)
    got, version = client.get_stream_metadata(stream_name)
    assert got == meta
    assert version == 0

    meta2 = {**meta, "foo": "baz"}
    client.set_stream_metadata(stream_name, metadata=meta2, current_version=0)
    got, version = client.get_stream_metadata(stream_name)
    assert got == meta2
    assert version == 1

    with pytest.raises(WrongCurrentVersionError):
        client.set_stream_metadata(stream_name, metadata={"x": 1}, current_version=0)
    with pytest.raises(WrongCurrentVersionError):
        client.set_stream_metadata(stream_name, metadata={"x": 1}, current_version=10)
    assert client.get_stream_metadata(stream_name) == (meta2, 1)

    # The stream itself is untouched.
    assert len(client.get_stream(stream_name)) == 1


def test_metadata_for_stream_that_does_not_exist_yet(client, stream_name):
    client.set_stream_metadata(
        stream_name, metadata={"a": 1}, current_version=StreamState.NO_STREAM
    )
    assert client.get_stream_metadata(stream_name) == ({"a": 1}, 0)
    event = new_event()
    client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=event)
    assert ids(client.get_stream(stream_name)) == [event.id]


def test_metadata_stream_reads_as_a_stream(client, stream_name):
    client.set_stream_metadata(stream_name, metadata={"a": 1})
    client.set_stream_metadata(stream_name, metadata={"a": 2})
    latest = client.get_stream(f"$${stream_name}", backwards=True, limit=1)
    assert len(latest) == 1
    assert latest[0].type == "$metadata"
    assert latest[0].stream_name == f"$${stream_name}"
    assert latest[0].data == b'{"a": 2}'
    assert latest[0].stream_position == 1


def test_max_count_is_honoured(client, stream_name):
    events = new_events(5)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=events)
    client.set_stream_metadata(stream_name, metadata={"$maxCount": 2})
    assert ids(client.get_stream(stream_name)) == ids(events[3:])
    assert ids(client.get_stream(stream_name, backwards=True)) == ids(events[:2:-1])
    # The revision is unaffected.
    assert client.get_current_version(stream_name) == 4


def test_truncate_before_is_honoured(client, stream_name):
    events = new_events(5)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=events)
    client.set_stream_metadata(stream_name, metadata={"$tb": 3})
    recorded = client.get_stream(stream_name)
    assert ids(recorded) == ids(events[3:])
    assert [r.stream_position for r in recorded] == [3, 4]
    # Lifting the truncation makes the events visible again (nothing was scavenged).
    client.set_stream_metadata(stream_name, metadata={})
    assert ids(client.get_stream(stream_name)) == ids(events)
