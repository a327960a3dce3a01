"""Filtered reads of $all as the Python client drives them: the checkpoint cadence of its
default window and multiplier, and reads from a position that is not an event's."""

from __future__ import annotations

import os

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.events import Checkpoint
from kurrentdbclient.exceptions import KurrentDBClientError

from helpers import SUB_TIMEOUT, new_events, unique


def test_subscribe_to_all_checkpoints_every_default_window_times_multiplier(fresh_client):
    """The client's defaults (window 30, multiplier 5): a checkpoint every 150 events looked
    at, and one more on catching up."""
    client = fresh_client
    name = unique("cadence")
    # A fresh server's $all begins with the events that create its built-in users; the last
    # event is kept off a window's end, so the catching-up checkpoint is one of its own.
    initial = len(list(client.read_all(filter_exclude=())))
    assert initial > 0, "the built-in users' events"
    count = 320 if (initial + 320) % 150 else 321
    client.append_events(name, current_version=StreamState.NO_STREAM, events=new_events(count))
    positions = [e.commit_position for e in client.read_all(filter_exclude=())]
    assert len(positions) == initial + count
    # A regex on stream names: the engine serves event-type filters from its indexes,
    # looking only at the keys' events (docs/INDEXES.md, "Ordinary filters"), while a
    # stream-name regex looks at every event, as the reference server's windows do.
    sub = client.subscribe_to_all(
        filter_include=("Wanted",),
        filter_by_stream_name=True,
        include_checkpoints=True,
        include_caught_up=True,
        timeout=SUB_TIMEOUT,
    )
    try:
        checkpoints = []
        for item in sub:
            if isinstance(item, Checkpoint):
                checkpoints.append(item.commit_position)
            elif item.is_caught_up:
                break
            else:
                pytest.fail(f"filtered-out event delivered: {item.type}")
    finally:
        sub.stop()
    windows = [positions[i] for i in range(149, len(positions), 150)]
    assert checkpoints == windows + [positions[-1]]


def test_read_all_from_inside_an_event_fails_as_on_the_reference_server(fresh_client):
    """The engine's positions are byte offsets, so one can fall inside an event. PostgreSQL
    numbers events densely: there the same read starts at the event with that position."""
    client = fresh_client
    name = unique("inside")
    client.append_events(name, current_version=StreamState.NO_STREAM, events=new_events(2))
    first = next(iter(client.read_all(filter_exclude=(), limit=1)))
    if os.environ.get("STRATA_TEST_STORE") == "postgres":
        following = first.commit_position + 1
        read = list(client.read_all(commit_position=following, filter_exclude=(), limit=1))
        assert [e.commit_position for e in read] == [following]
        return
    inside = first.commit_position + 8
    for filter_include, text in (
        ((), "Unexpected ReadAllResult: InvalidPosition"),
        (("OrderCreated",), "Unexpected FilteredReadAllResult: InvalidPosition"),
    ):
        with pytest.raises(KurrentDBClientError) as raised:
            list(
                client.read_all(
                    commit_position=inside, filter_exclude=(), filter_include=filter_include
                )
            )
        assert text in str(raised.value), str(raised.value)

