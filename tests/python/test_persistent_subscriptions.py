"""Persistent subscriptions (consumer groups): management, read + ack, nack park and replay,
max subscribers, the strategies (RoundRobin, DispatchToSingle, Pinned) with several consumers,
nack retry and skip, retries exhausted, message timeouts."""

from __future__ import annotations

import queue
import threading

import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import (
    AlreadyExistsError,
    MaximumSubscriptionsReachedError,
    NotFoundError,
)

from conftest import wait_until
from helpers import SUB_TIMEOUT, ids, new_events, unique


def _append(client, stream_name: str, count: int) -> list:
    events = new_events(count)
    client.append_events(stream_name, current_version=StreamState.ANY, events=events)
    return ids(events)


def test_create_list_info_update_delete(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, max_retry_count=3)
    with pytest.raises(AlreadyExistsError):
        client.create_subscription_to_stream(group, stream_name)

    listed = client.list_subscriptions_to_stream(stream_name)
    assert [info.group_name for info in listed] == [group]
    info = client.get_subscription_info(group, stream_name)
    assert info.event_source == stream_name
    assert info.max_retry_count == 3
    assert info.consumer_strategy == "DispatchToSingle"
    assert info.start_from == "0"

    client.update_subscription_to_stream(
        group, stream_name, max_retry_count=6, consumer_strategy="RoundRobin"
    )
    info = client.get_subscription_info(group, stream_name)
    assert (info.max_retry_count, info.consumer_strategy) == (6, "RoundRobin")

    all_group = unique("all")
    client.create_subscription_to_all(
        all_group, filter_include=[stream_name], filter_by_stream_name=True
    )
    every = {(info.event_source, info.group_name) for info in client.list_subscriptions()}
    assert {(stream_name, group), ("$all", all_group)} <= every
    assert client.get_subscription_info(all_group).start_from == "C:0/P:0"

    client.delete_subscription(group, stream_name)
    client.delete_subscription(all_group)
    with pytest.raises(NotFoundError):
        client.get_subscription_info(group, stream_name)
    assert client.list_subscriptions_to_stream(stream_name) == []


def test_read_and_ack(client, stream_name):
    appended = _append(client, stream_name, 3)
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name)
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        got = [next(subscription) for _ in range(3)]
        assert [event.id for event in got] == appended
        assert [event.retry_count for event in got] == [0, 0, 0]
        for event in got:
            subscription.ack(event)

        def all_acked():
            info = client.get_subscription_info(group, stream_name)
            return info.total_in_flight_messages == 0 and info.total_items == 3

        assert wait_until(all_acked), client.get_subscription_info(group, stream_name)
    finally:
        subscription.stop()


def test_nack_park_then_replay_parked(client, stream_name):
    appended = _append(client, stream_name, 2)
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name)
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        poison = next(subscription)
        assert poison.id == appended[0]
        subscription.nack(poison, action="park")
        healthy = next(subscription)
        assert healthy.id == appended[1]
        subscription.ack(healthy)

        def parked_count():
            return client.get_subscription_info(group, stream_name).parked_message_count

        assert wait_until(lambda: parked_count() == 1)
        client.replay_parked_events(group, stream_name)
        replayed = next(subscription)
        assert replayed.id == appended[0]
        subscription.ack(replayed)
        assert wait_until(lambda: parked_count() == 0)
    finally:
        subscription.stop()


def test_max_subscriber_count_refuses_one_more(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, max_subscriber_count=1)
    first = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        with pytest.raises(MaximumSubscriptionsReachedError):
            second = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
            next(second)
    finally:
        first.stop()


def test_round_robin_spreads_over_two_consumers(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, consumer_strategy="RoundRobin")
    first = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    second = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        # Both are connected once the group lists them; only then are events written.
        assert wait_until(
            lambda: len(client.get_subscription_info(group, stream_name).connections) == 2
        )
        appended = _append(client, stream_name, 10)
        got_first = [next(first) for _ in range(5)]
        got_second = [next(second) for _ in range(5)]
        for event in got_first:
            first.ack(event)
        for event in got_second:
            second.ack(event)
        assert sorted(event.id for event in got_first + got_second) == sorted(appended)
        assert [event.id for event in got_first] == appended[0::2]
    finally:
        first.stop()
        second.stop()


def _connections(client, group: str, stream_name: str | None = None) -> int:
    if stream_name is None:
        return len(client.get_subscription_info(group).connections)
    return len(client.get_subscription_info(group, stream_name).connections)


def _nothing_in_flight(client, group: str, stream_name: str) -> bool:
    return client.get_subscription_info(group, stream_name).total_in_flight_messages == 0


class _Drain:
    """Runs each consumer in its own thread, acking everything it gets, and collects
    (consumer index, event) in arrival order. Stop the consumers to end the threads."""

    def __init__(self, consumers) -> None:
        self._arrived: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._run, args=(index, consumer), daemon=True)
            for index, consumer in enumerate(consumers)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int, consumer) -> None:
        try:
            for event in consumer:
                consumer.ack(event)
                self._arrived.put((index, event))
        except Exception as error:  # noqa: BLE001 - reported by take() unless stopping
            self._arrived.put((index, error))

    def take(self, count: int) -> list:
        got = []
        while len(got) < count:
            try:
                index, item = self._arrived.get(timeout=SUB_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"only {len(got)} of {count} events arrived") from None
            if isinstance(item, BaseException):
                raise AssertionError(f"consumer {index} failed after {len(got)} events") from item
            got.append((index, item))
        return got

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)


def test_dispatch_to_single_gives_everything_to_the_first_consumer(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(
        group, stream_name, consumer_strategy="DispatchToSingle"
    )
    first = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=50, timeout=SUB_TIMEOUT
    )
    second = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=50, timeout=SUB_TIMEOUT
    )
    try:
        assert wait_until(lambda: _connections(client, group, stream_name) == 2)
        appended = _append(client, stream_name, 20)
        got = [next(first) for _ in range(20)]
        assert [event.id for event in got] == appended
        for event in got:
            first.ack(event)
        assert wait_until(lambda: _nothing_in_flight(client, group, stream_name))

        # The second consumer got nothing: once the first is gone, its next event is a new one.
        first.stop()
        assert wait_until(lambda: _connections(client, group, stream_name) == 1)
        (sentinel,) = _append(client, stream_name, 1)
        event = next(second)
        assert (event.id, event.retry_count) == (sentinel, 0)
        second.ack(event)
    finally:
        first.stop()
        second.stop()


def test_dispatch_to_single_moves_on_when_the_first_consumer_is_full(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(
        group, stream_name, consumer_strategy="DispatchToSingle"
    )
    first = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=5, timeout=SUB_TIMEOUT
    )
    second = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=50, timeout=SUB_TIMEOUT
    )
    try:
        assert wait_until(lambda: _connections(client, group, stream_name) == 2)
        appended = _append(client, stream_name, 20)
        # Nothing is acked until both have read: the first holds 5 and has no room for more.
        got_first = [next(first) for _ in range(5)]
        got_second = [next(second) for _ in range(15)]
        assert [event.id for event in got_first] == appended[:5]
        assert [event.id for event in got_second] == appended[5:]
        for event in got_first:
            first.ack(event)
        for event in got_second:
            second.ack(event)
        assert wait_until(lambda: _nothing_in_flight(client, group, stream_name))
    finally:
        first.stop()
        second.stop()


def test_pinned_keeps_each_stream_on_one_of_three_consumers(client):
    prefix = unique("pin")
    group = unique("g")
    client.create_subscription_to_all(
        group,
        consumer_strategy="Pinned",
        filter_include=[f"{prefix}-.*"],
        filter_by_stream_name=True,
    )
    consumers = [
        client.read_subscription_to_all(group, event_buffer_size=100, timeout=SUB_TIMEOUT)
        for _ in range(3)
    ]
    drain = None
    try:
        assert wait_until(lambda: _connections(client, group) == 3)
        # Five streams written in turn: under RoundRobin their events would change consumer.
        appended: dict[str, list] = {f"{prefix}-{n}": [] for n in range(5)}
        for _ in range(4):
            for stream in appended:
                appended[stream] += _append(client, stream, 1)
        drain = _Drain(consumers)
        got = drain.take(20)

        owners: dict[str, set[int]] = {}
        delivered: dict[str, list] = {}
        for index, event in got:
            owners.setdefault(event.stream_name, set()).add(index)
            delivered.setdefault(event.stream_name, []).append(event.id)
        assert set(owners) == set(appended)
        for stream, indexes in owners.items():
            assert len(indexes) == 1, f"{stream} went to consumers {indexes}"
        # One consumer per stream, so each stream arrives whole and in order.
        assert delivered == appended
        used = set().union(*owners.values())
        assert len(used) > 1, f"Pinned spreads streams over consumers: {owners}"
    finally:
        for consumer in consumers:
            consumer.stop()
        if drain is not None:
            drain.join()


def test_nack_retry_redelivers_with_a_higher_retry_count_and_skip_does_not(
    client, stream_name
):
    appended = _append(client, stream_name, 3)
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name)
    # One slot: the retried event comes back before the next one is delivered.
    subscription = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=1, timeout=SUB_TIMEOUT
    )
    try:
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 0)
        subscription.nack(event, action="retry")
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 1)
        subscription.nack(event, action="retry")
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 2)
        subscription.ack(event)

        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[1], 0)
        subscription.nack(event, action="skip")
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[2], 0)
        subscription.ack(event)

        assert wait_until(lambda: _nothing_in_flight(client, group, stream_name))
        info = client.get_subscription_info(group, stream_name)
        assert info.parked_message_count == 0
        # The skipped event is finished: the next delivery is a new event.
        (sentinel,) = _append(client, stream_name, 1)
        event = next(subscription)
        assert (event.id, event.retry_count) == (sentinel, 0)
        subscription.ack(event)
    finally:
        subscription.stop()


def test_nack_retry_beyond_max_retry_count_parks_the_event(client, stream_name):
    appended = _append(client, stream_name, 2)
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, max_retry_count=1)
    subscription = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=1, timeout=SUB_TIMEOUT
    )
    try:
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 0)
        subscription.nack(event, action="retry")
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 1)
        subscription.nack(event, action="retry")  # no retry left: parked
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[1], 0)
        subscription.ack(event)

        def parked_count():
            return client.get_subscription_info(group, stream_name).parked_message_count

        assert wait_until(lambda: parked_count() == 1)
    finally:
        subscription.stop()


def test_an_event_not_acked_within_the_message_timeout_is_delivered_again(
    client, stream_name
):
    (appended,) = _append(client, stream_name, 1)
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, message_timeout=1.0)
    assert client.get_subscription_info(group, stream_name).message_timeout == 1.0
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended, 0)
        event = next(subscription)  # not acked: back after the timeout
        assert (event.id, event.retry_count) == (appended, 1)
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended, 2)
        subscription.ack(event)
        assert wait_until(lambda: _nothing_in_flight(client, group, stream_name))
    finally:
        subscription.stop()


def test_an_event_timing_out_with_no_retry_left_is_parked(client, stream_name):
    appended = _append(client, stream_name, 2)
    group = unique("g")
    client.create_subscription_to_stream(
        group, stream_name, message_timeout=1.0, max_retry_count=0
    )
    subscription = client.read_subscription_to_stream(
        group, stream_name, event_buffer_size=1, timeout=SUB_TIMEOUT
    )
    try:
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[0], 0)
        # Not acked: it times out, is parked, and its slot goes to the next event.
        event = next(subscription)
        assert (event.id, event.retry_count) == (appended[1], 0)
        subscription.ack(event)

        def parked_count():
            return client.get_subscription_info(group, stream_name).parked_message_count

        assert wait_until(lambda: parked_count() == 1)
    finally:
        subscription.stop()
