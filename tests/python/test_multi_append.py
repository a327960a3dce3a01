"""Atomic appends to several streams: kurrentdbclient's `multi_append_to_stream`, which
sends the v2 `StreamsService.AppendSession` (one request per stream, one commit), and its
`append_records`, which sends the v2 `AppendRecords` (records naming their streams, with
consistency checks on streams written or not)."""

from __future__ import annotations

import json
import os

import pytest
from kurrentdbclient import NewEvent, NewEvents, NewRecord, StreamState, StreamStateCheck
from kurrentdbclient.exceptions import (
    ConsistencyChecksFailedError,
    MultiAppendToSameStreamError,
    StreamTombstonedError,
    WrongCurrentVersionError,
)

from helpers import ids, unique


def string_metadata_event(type_: str = "MoneyMoved") -> NewEvent:
    """The v2 protocol carries metadata as properties: a JSON object of strings."""
    data = json.dumps({"n": os.urandom(8).hex()}).encode()
    metadata = json.dumps({"m": os.urandom(4).hex()}).encode()
    return NewEvent(type=type_, data=data, metadata=metadata)


def assert_same_events(recorded, proposed) -> None:
    """As helpers.assert_same_events, the metadata compared as JSON: the v2 protocol sends it
    as properties, which the server stores as a JSON object of its own spelling."""
    assert ids(recorded) == ids(proposed)
    for r, p in zip(recorded, proposed, strict=True):
        assert (r.type, r.data, r.content_type) == (p.type, p.data, p.content_type)
        assert json.loads(r.metadata) == json.loads(p.metadata)


def test_parts_land_together_in_request_order(client):
    debit, credit = unique("account"), unique("account")
    client.append_events(debit, current_version=StreamState.NO_STREAM, events=[string_metadata_event()])
    debit_events = [string_metadata_event(), string_metadata_event()]
    credit_events = [string_metadata_event()]
    position = client.multi_append_to_stream(
        [
            NewEvents(stream_name=debit, events=debit_events, current_version=0),
            NewEvents(stream_name=credit, events=credit_events, current_version=StreamState.NO_STREAM),
        ]
    )
    assert_same_events(client.get_stream(debit)[1:], debit_events)
    assert_same_events(client.get_stream(credit), credit_events)
    tail = list(client.read_all(backwards=True, limit=3))
    assert ids(reversed(tail)) == ids(debit_events + credit_events), "consecutive in $all"
    assert tail[0].commit_position == position, "the session reports its last position"


def test_a_conflicting_part_fails_the_whole_session(client):
    first, second = unique("account"), unique("account")
    client.append_events(second, current_version=StreamState.NO_STREAM, events=[string_metadata_event()])
    with pytest.raises(WrongCurrentVersionError) as error:
        client.multi_append_to_stream(
            [
                NewEvents(stream_name=first, events=[string_metadata_event()], current_version=StreamState.NO_STREAM),
                NewEvents(stream_name=second, events=[string_metadata_event()], current_version=5),
            ]
        )
    assert error.value.stream_name == second
    assert error.value.actual_version == 0
    assert client.get_current_version(first) == StreamState.NO_STREAM, "nothing of the session was written"


def test_a_tombstoned_stream_fails_the_session(client):
    gone, other = unique("account"), unique("account")
    client.tombstone_stream(gone, current_version=StreamState.ANY)
    with pytest.raises(StreamTombstonedError):
        client.multi_append_to_stream(
            [
                NewEvents(stream_name=other, events=[string_metadata_event()], current_version=StreamState.ANY),
                NewEvents(stream_name=gone, events=[string_metadata_event()], current_version=StreamState.ANY),
            ]
        )
    assert client.get_current_version(other) == StreamState.NO_STREAM


def test_a_stream_twice_in_one_session_is_refused(client):
    stream = unique("account")
    with pytest.raises(MultiAppendToSameStreamError):
        client.multi_append_to_stream(
            [
                NewEvents(stream_name=stream, events=[string_metadata_event()], current_version=StreamState.ANY),
                NewEvents(stream_name=stream, events=[string_metadata_event()], current_version=StreamState.ANY),
            ]
        )
    assert client.get_current_version(stream) == StreamState.NO_STREAM


def test_resending_a_session_returns_its_position(client):
    debit, credit = unique("account"), unique("account")
    session = [
        NewEvents(stream_name=debit, events=[string_metadata_event()], current_version=StreamState.NO_STREAM),
        NewEvents(stream_name=credit, events=[string_metadata_event()], current_version=StreamState.NO_STREAM),
    ]
    first = client.multi_append_to_stream(session)
    again = client.multi_append_to_stream(session)
    assert again == first
    assert len(client.get_stream(debit)) == 1 and len(client.get_stream(credit)) == 1


def string_metadata_record(stream_name: str, type_: str = "MoneyMoved") -> NewRecord:
    event = string_metadata_event(type_)
    return NewRecord(stream_name=stream_name, type=event.type, data=event.data, metadata=event.metadata)


def test_append_records_writes_with_checks_on_streams_not_written(client):
    debit, credit, course = unique("account"), unique("account"), unique("course")
    client.append_events(course, current_version=StreamState.NO_STREAM, events=[string_metadata_event()])
    records = [string_metadata_record(debit), string_metadata_record(credit), string_metadata_record(debit)]
    result = client.append_records(
        records,
        [StreamStateCheck(course, 0), StreamStateCheck(debit, StreamState.NO_STREAM)],
    )
    assert [(p.stream_name, p.stream_position) for p in result.stream_positions] == [(debit, 1), (credit, 0)]
    assert ids(client.get_stream(debit)) == [records[0].id, records[2].id]
    assert ids(client.get_stream(credit)) == [records[1].id]
    assert len(client.get_stream(course)) == 1, "a check writes nothing"
    last = next(iter(client.read_all(backwards=True, limit=1)))
    assert last.commit_position == result.commit_position


def test_append_records_reports_every_failed_check(client):
    written, course, student = unique("account"), unique("course"), unique("student")
    client.append_events(course, current_version=StreamState.NO_STREAM, events=[string_metadata_event()])
    client.append_events(student, current_version=StreamState.NO_STREAM, events=[string_metadata_event()])
    with pytest.raises(ConsistencyChecksFailedError) as error:
        client.append_records(
            [string_metadata_record(written)],
            [
                StreamStateCheck(course, 3),
                StreamStateCheck(unique("free"), StreamState.ANY),
                StreamStateCheck(student, StreamState.NO_STREAM),
                StreamStateCheck(unique("missing"), StreamState.EXISTS),
            ],
        )
    failures = [
        (f.check_index, f.stream_state_failure.expected_state, f.stream_state_failure.actual_state)
        for f in error.value.failures
    ]
    assert failures == [(0, 3, 0), (2, -1, 0), (3, -4, -1)]
    assert client.get_current_version(written) == StreamState.NO_STREAM, "nothing was written"
