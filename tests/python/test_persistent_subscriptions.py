"""Persistent subscriptions (consumer groups): management, read + ack, nack park and replay,
max subscribers, RoundRobin across two consumers."""

from __future__ import annotations

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
