"""Catch-up subscriptions: history, caught-up, then live events, in order, without duplicates."""

from __future__ import annotations

import threading
import time

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.events import Checkpoint

from helpers import (
    SUB_TIMEOUT,
    assert_no_duplicates,
    assert_same_events,
    ids,
    new_event,
    new_events,
    read_until_caught_up,
    read_until_id,
    unique,
    without_users,
)

# --- subscribe_to_stream -----------------------------------------------------------------------


def test_subscribe_to_stream_from_start_history_then_live(client, stream_name):
    history = new_events(3)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=history)

    sub = client.subscribe_to_stream(stream_name, include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        assert sub.subscription_id
        got = read_until_caught_up(sub)
        assert_same_events(got, history)

        other = unique("other")
        live1 = new_event("Live1")
        live2 = new_events(2, "Live2")
        client.append_event(stream_name, current_version=2, event=live1)
        client.append_events(other, current_version=StreamState.ANY, events=new_events(2))
        client.append_events(stream_name, current_version=3, events=live2)

        live = read_until_id(sub, live2[-1].id)
        assert_same_events(live, [live1, *live2])
        assert [r.stream_position for r in live] == [3, 4, 5]
        assert all(r.stream_name == stream_name for r in live)
        assert_no_duplicates(got + live)
    finally:
        sub.stop()


def test_subscribe_to_stream_from_position_is_exclusive(client, stream_name):
    history = new_events(5)
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=history)

    sub = client.subscribe_to_stream(
        stream_name, stream_position=2, include_caught_up=True, timeout=SUB_TIMEOUT
    )
    try:
        # KurrentDB: a catch-up subscription starts *after* the given revision.
        got = read_until_caught_up(sub)
        assert ids(got) == ids(history[3:])
        live = new_event("Live")
        client.append_event(stream_name, current_version=4, event=live)
        assert ids(read_until_id(sub, live.id)) == [live.id]
    finally:
        sub.stop()


def test_subscribe_to_stream_before_it_exists(client, stream_name):
    sub = client.subscribe_to_stream(stream_name, include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        assert read_until_caught_up(sub) == []
        events = new_events(3)
        client.append_event(stream_name, current_version=StreamState.NO_STREAM, event=events[0])
        client.append_events(stream_name, current_version=0, events=events[1:])
        got = read_until_id(sub, events[-1].id)
        assert_same_events(got, events)
    finally:
        sub.stop()


def test_subscribe_to_stream_from_end(client, stream_name):
    client.append_events(stream_name, current_version=StreamState.NO_STREAM, events=new_events(3))
    sub = client.subscribe_to_stream(stream_name, from_end=True, timeout=SUB_TIMEOUT)
    try:
        live = new_events(2)
        client.append_events(stream_name, current_version=2, events=live)
        assert ids(read_until_id(sub, live[-1].id)) == ids(live)
    finally:
        sub.stop()


def test_subscribe_to_stream_live_events_keep_order_under_concurrent_appends(client, stream_name):
    sub = client.subscribe_to_stream(stream_name, include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        assert read_until_caught_up(sub) == []
        appended = new_events(200)

        def writer():
            for e in appended:
                client.append_event(stream_name, current_version=StreamState.ANY, event=e)

        t = threading.Thread(target=writer)
        t.start()
        got = read_until_id(sub, appended[-1].id)
        t.join()
        assert ids(got) == ids(appended)
        assert [r.stream_position for r in got] == list(range(200))
    finally:
        sub.stop()


# --- subscribe_to_all --------------------------------------------------------------------------


def test_subscribe_to_all_from_start_history_then_live(fresh_client):
    client = fresh_client
    s1, s2 = unique("a"), unique("b")
    history = new_events(3) + new_events(2, "Other")
    client.append_events(s1, current_version=StreamState.NO_STREAM, events=history[:3])
    client.append_events(s2, current_version=StreamState.NO_STREAM, events=history[3:])

    sub = client.subscribe_to_all(include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        got = read_until_caught_up(sub)
        assert_same_events(got, history)

        live = [new_event("L1"), new_event("L2"), new_event("L3")]
        client.append_event(s1, current_version=2, event=live[0])
        client.append_events(s2, current_version=1, events=live[1:])
        got_live = read_until_id(sub, live[-1].id)
        assert_same_events(got_live, live)
        assert [r.stream_name for r in got_live] == [s1, s2, s2]

        everything = got + got_live
        assert_no_duplicates(everything)
        positions = [r.commit_position for r in everything]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
    finally:
        sub.stop()


def test_subscribe_to_all_from_commit_position_is_exclusive(fresh_client):
    client = fresh_client
    name = unique("s")
    e = new_events(4)
    p0 = client.append_events(name, current_version=StreamState.NO_STREAM, events=e[:2])
    client.append_events(name, current_version=1, events=e[2:])

    sub = client.subscribe_to_all(commit_position=p0, include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        # p0 is e[1]'s position; the subscription starts after it.
        assert ids(read_until_caught_up(sub)) == ids(e[2:])
        live = new_event()
        client.append_event(name, current_version=3, event=live)
        assert ids(read_until_id(sub, live.id)) == [live.id]
    finally:
        sub.stop()


def test_subscribe_to_all_from_end(fresh_client):
    client = fresh_client
    name = unique("s")
    client.append_events(name, current_version=StreamState.NO_STREAM, events=new_events(3))
    sub = client.subscribe_to_all(from_end=True, timeout=SUB_TIMEOUT)
    try:
        live = new_events(2)
        client.append_events(name, current_version=2, events=live)
        assert ids(read_until_id(sub, live[-1].id)) == ids(live)
    finally:
        sub.stop()


def test_subscribe_to_all_default_filter_excludes_metadata_events(fresh_client):
    """The client's default filter is the .NET regex ^(?!(\\$.+$|PersistentConfig\\d+$|Result$)).

    It must keep ordinary events and drop `$metadata` ones, in history and live.
    """
    client = fresh_client
    name = unique("meta")
    before = new_events(2)
    client.append_events(name, current_version=StreamState.NO_STREAM, events=before)
    client.set_stream_metadata(name, metadata={"$maxCount": 50, "owner": "py"})
    # Event types the default filter must NOT drop (anchored alternatives, not substrings).
    keep = [new_event("Results"), new_event("PersistentConfigX"), new_event("a$b")]
    client.append_events(name, current_version=1, events=keep)
    # ... and ones it must drop.
    client.append_events(
        unique("sys"),
        current_version=StreamState.ANY,
        events=[new_event("Result"), new_event("PersistentConfig1"), new_event("$custom")],
    )

    sub = client.subscribe_to_all(include_caught_up=True, timeout=SUB_TIMEOUT)
    try:
        history = read_until_caught_up(sub)
        assert [(r.stream_name, r.type) for r in history] == [
            (r.stream_name, r.type) for r in history if not r.type.startswith("$")
        ]
        assert_same_events(history, before + keep)

        client.set_stream_metadata(name, metadata={"$maxCount": 60})
        live = new_event("AfterMeta")
        client.append_event(name, current_version=StreamState.ANY, event=live)
        got = read_until_id(sub, live.id)
        assert ids(got) == [live.id], [(r.stream_name, r.type) for r in got]
    finally:
        sub.stop()

    # Without the filter, the $metadata events are in $all (so the filter is what hid them).
    unfiltered = client.subscribe_to_all(
        filter_exclude=(), include_caught_up=True, timeout=SUB_TIMEOUT
    )
    try:
        types = [r.type for r in without_users(read_until_caught_up(unfiltered))]
        assert types.count("$metadata") == 2
        assert "$custom" in types
    finally:
        unfiltered.stop()


def test_subscribe_to_all_filter_include_event_type_and_stream_name(fresh_client):
    client = fresh_client
    s1, s2 = unique("alpha"), unique("beta")
    client.append_events(s1, current_version=StreamState.NO_STREAM, events=new_events(2, "Keep"))
    client.append_events(s2, current_version=StreamState.NO_STREAM, events=new_events(2, "Drop"))

    by_type = client.subscribe_to_all(
        filter_include=("Keep",), include_caught_up=True, timeout=SUB_TIMEOUT
    )
    by_name = client.subscribe_to_all(
        filter_include=("beta-.*",),
        filter_by_stream_name=True,
        include_caught_up=True,
        timeout=SUB_TIMEOUT,
    )
    # An explicit exclude replaces the client's default: "$" types (the built-in users'
    # events) are named as well.
    by_exclude = client.subscribe_to_all(
        filter_exclude=("Keep", r"\$.*"), include_caught_up=True, timeout=SUB_TIMEOUT
    )
    try:
        assert [r.type for r in read_until_caught_up(by_type)] == ["Keep", "Keep"]
        assert [r.stream_name for r in read_until_caught_up(by_name)] == [s2, s2]
        assert [r.type for r in read_until_caught_up(by_exclude)] == ["Drop", "Drop"]

        k, d = new_event("Keep"), new_event("Drop")
        client.append_event(s2, current_version=1, event=k)  # type Keep, stream beta
        client.append_event(s1, current_version=1, event=d)  # type Drop, stream alpha
        marker = new_event("Keep")
        client.append_event(s2, current_version=2, event=marker)

        assert ids(read_until_id(by_type, marker.id)) == [k.id, marker.id]
        assert ids(read_until_id(by_name, marker.id)) == [k.id, marker.id]
        marker2 = new_event("Drop")
        client.append_event(s1, current_version=2, event=marker2)
        assert ids(read_until_id(by_exclude, marker2.id)) == [d.id, marker2.id]
    finally:
        for s in (by_type, by_name, by_exclude):
            s.stop()


def test_subscribe_to_all_checkpoints_in_history(fresh_client):
    client = fresh_client
    name = unique("cp")
    client.append_events(name, current_version=StreamState.NO_STREAM, events=new_events(10))

    def subscribe(commit_position=None):
        return client.subscribe_to_all(
            commit_position=commit_position,
            filter_include=("Rare",),
            include_checkpoints=True,
            include_caught_up=True,
            window_size=1,
            checkpoint_interval_multiplier=1,
            timeout=SUB_TIMEOUT,
        )

    sub = subscribe()
    try:
        checkpoints = []
        for item in sub:
            if isinstance(item, Checkpoint):
                checkpoints.append(item.commit_position)
            elif item.is_caught_up:
                break
            else:
                pytest.fail(f"filtered-out event delivered: {item.type}")
        assert checkpoints, "no checkpoint before caught_up with window 1, multiplier 1"
        assert checkpoints == sorted(checkpoints)
    finally:
        sub.stop()

    # A checkpoint is a resume position: subscribing (exclusively) from the last one must
    # deliver the next matching event, whatever position it lands at.
    rare = new_event("Rare")
    p_rare = client.append_event(name, current_version=9, event=rare)
    resumed = subscribe(commit_position=checkpoints[-1])
    try:
        got = read_until_caught_up(resumed)
        assert ids(got) == [rare.id], (
            f"resumed from checkpoint {checkpoints[-1]}; next event is at {p_rare}; "
            f"got {[(r.type, r.commit_position) for r in got]}"
        )
    finally:
        resumed.stop()


def test_subscribe_to_all_checkpoints_while_live(fresh_client):
    """Checkpoints let a client with a sparse filter advance its resume position while live."""
    client = fresh_client
    name = unique("cp")
    client.append_event(name, current_version=StreamState.NO_STREAM, event=new_event("Unwanted"))
    sub = client.subscribe_to_all(
        filter_include=("Wanted",),
        include_checkpoints=True,
        include_caught_up=True,
        window_size=1,
        checkpoint_interval_multiplier=1,
        timeout=SUB_TIMEOUT,
    )
    try:
        read_until_caught_up(sub)
        before_live = client.get_commit_position()
        client.append_events(name, current_version=0, events=new_events(5, "Unwanted"))
        # The unwanted live events alone move the checkpoints past the history. Awaited
        # before the wanted event is written, so the two cannot share one page of the log.
        live_cps = []
        for item in sub:
            assert item.is_checkpoint or item.is_caught_up, f"filtered out: {item.type}"
            if item.is_checkpoint:
                live_cps.append(item.commit_position)
                if item.commit_position > before_live:
                    break
        wanted = new_event("Wanted")
        p_wanted = client.append_event(name, current_version=5, event=wanted)
        got = read_until_id(sub, wanted.id, keep_markers=True)
        assert [r.id for r in got if not r.is_checkpoint and not r.is_caught_up] == [wanted.id]
        cps = live_cps + [r.commit_position for r in got if r.is_checkpoint]
        assert cps == sorted(cps)
        assert any(cp > before_live for cp in cps), (cps, before_live)
    finally:
        sub.stop()

    # Resuming from the last checkpoint seen before the wanted event must deliver it.
    resumed = client.subscribe_to_all(
        commit_position=cps[-1],
        filter_include=("Wanted",),
        include_caught_up=True,
        timeout=SUB_TIMEOUT,
    )
    try:
        got = read_until_caught_up(resumed)
        assert ids(got) == [wanted.id], (
            f"resumed from checkpoint {cps[-1]}; the wanted event is at {p_wanted}; "
            f"got {[(r.type, r.commit_position) for r in got]}"
        )
    finally:
        resumed.stop()


def test_subscribe_to_all_include_checkpoints_with_matching_events(fresh_client):
    client = fresh_client
    name = unique("mix")
    events = [new_event("Match" if i % 3 == 0 else "Skip") for i in range(30)]
    client.append_events(name, current_version=StreamState.NO_STREAM, events=events)
    sub = client.subscribe_to_all(
        filter_include=("Match",),
        include_checkpoints=True,
        include_caught_up=True,
        window_size=2,
        checkpoint_interval_multiplier=1,
        timeout=SUB_TIMEOUT,
    )
    try:
        items = []
        for item in sub:
            if item.is_caught_up:
                break
            items.append(item)
        matched = [r for r in items if not r.is_checkpoint]
        assert ids(matched) == ids(e for e in events if e.type == "Match")
        positions = [r.commit_position for r in items]
        assert positions == sorted(positions), "checkpoints and events out of order"
    finally:
        sub.stop()


def test_many_subscribers_see_the_same_live_events(fresh_client):
    client = fresh_client
    subs = [client.subscribe_to_all(include_caught_up=True, timeout=SUB_TIMEOUT) for _ in range(5)]
    try:
        for s in subs:
            assert read_until_caught_up(s) == []
        names = [unique("m") for _ in range(3)]
        appended = []
        for i in range(30):
            e = new_event(f"T{i % 4}")
            client.append_event(names[i % 3], current_version=StreamState.ANY, event=e)
            appended.append(e)
        for s in subs:
            assert ids(read_until_id(s, appended[-1].id)) == ids(appended)
    finally:
        for s in subs:
            s.stop()


def test_stopped_subscription_does_not_disturb_server(fresh_client):
    client = fresh_client
    name = unique("stop")
    sub = client.subscribe_to_all(include_caught_up=True, timeout=SUB_TIMEOUT)
    read_until_caught_up(sub)
    sub.stop()
    assert list(sub) == []
    time.sleep(0.2)
    event = new_event()
    client.append_event(name, current_version=StreamState.NO_STREAM, event=event)
    assert ids(client.get_stream(name)) == [event.id]
