"""Persistent subscriptions where Strata answers as the reference server (KurrentDB) does:
refused settings are INTERNAL, settings it accepts are accepted, a start of 2**64 - 1 is the
end (also through the legacy `revision` settings field the Node client uses), and listing the
groups of a stream without any is NOT_FOUND with the reference trailers."""

from __future__ import annotations

import grpc
import pytest
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import InternalError
from kurrentdbclient.protos.v1 import persistent_pb2, persistent_pb2_grpc, shared_pb2

from helpers import SUB_TIMEOUT, ids, new_events, unique

END = 2**64 - 1


def _stub(server) -> persistent_pb2_grpc.PersistentSubscriptionsStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return persistent_pb2_grpc.PersistentSubscriptionsStub(channel)


def test_an_unknown_strategy_and_a_read_batch_not_below_the_history_buffer_are_internal(
    client, stream_name
):
    with pytest.raises(InternalError) as unknown:
        client.create_subscription_to_stream(
            unique("g"), stream_name, consumer_strategy="Random"
        )
    assert "Consumer strategy Random does not exist." in str(unknown.value)
    with pytest.raises(InternalError) as too_large:
        client.create_subscription_to_stream(
            unique("g"), stream_name, read_batch_size=500, history_buffer_size=500
        )
    assert "read_batch_size" in str(too_large.value)

    group = unique("g")
    client.create_subscription_to_stream(group, stream_name)
    with pytest.raises(InternalError):
        client.update_subscription_to_stream(
            group, stream_name, read_batch_size=50, history_buffer_size=10
        )


def test_settings_the_reference_server_accepts_are_accepted(client, stream_name):
    group = unique("g")
    client.create_subscription_to_stream(
        group,
        stream_name,
        min_checkpoint_count=50,
        max_checkpoint_count=5,
        read_batch_size=0,
    )
    info = client.get_subscription_info(group, stream_name)
    assert (info.min_checkpoint_count, info.max_checkpoint_count) == (50, 5)
    assert info.read_batch_size == 0

    events = new_events(2)
    client.append_events(stream_name, current_version=StreamState.ANY, events=events)
    appended = ids(events)
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        got = [next(subscription) for _ in range(2)]
        assert [event.id for event in got] == appended
        for event in got:
            subscription.ack(event)
    finally:
        subscription.stop()


def test_a_stream_position_of_two_to_the_64_minus_one_is_the_end(client, stream_name):
    client.append_events(stream_name, current_version=StreamState.ANY, events=new_events(3))
    group = unique("g")
    client.create_subscription_to_stream(group, stream_name, stream_position=END)
    assert client.get_subscription_info(group, stream_name).start_from == "-1"
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        later = new_events(1)
        client.append_events(stream_name, current_version=StreamState.ANY, events=later)
        event = next(subscription)
        assert (event.id, event.stream_position) == (later[0].id, 3)
        subscription.ack(event)
    finally:
        subscription.stop()
    client.update_subscription_to_stream(group, stream_name, stream_position=END)
    [listed] = client.list_subscriptions_to_stream(stream_name)
    assert listed.start_from == "-1"


def test_the_legacy_revision_field_of_two_to_the_64_minus_one_is_the_end(
    server, client, stream_name
):
    client.append_events(stream_name, current_version=StreamState.ANY, events=new_events(2))
    group = unique("legacy")
    # As the Node client sends "from the end": the stream beside the options, the start in
    # the deprecated settings field `revision`.
    request = persistent_pb2.CreateReq(
        options=persistent_pb2.CreateReq.Options(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream_name.encode()),
            group_name=group,
            settings=persistent_pb2.CreateReq.Settings(
                revision=END,
                live_buffer_size=500,
                read_batch_size=20,
                history_buffer_size=500,
                max_checkpoint_count=1000,
                consumer_strategy="RoundRobin",
            ),
        )
    )
    _stub(server).Create(request, timeout=10)
    assert client.get_subscription_info(group, stream_name).start_from == "-1"
    subscription = client.read_subscription_to_stream(group, stream_name, timeout=SUB_TIMEOUT)
    try:
        later = new_events(1)
        client.append_events(stream_name, current_version=StreamState.ANY, events=later)
        event = next(subscription)
        assert event.id == later[0].id, "the group delivers (it starts at the end)"
    finally:
        subscription.stop()


def test_listing_the_groups_of_a_stream_without_any_is_not_found(server, client):
    stream_name = unique("none")
    assert client.list_subscriptions_to_stream(stream_name) == []
    request = persistent_pb2.ListReq(
        options=persistent_pb2.ListReq.Options(
            list_for_stream=persistent_pb2.ListReq.StreamOption(
                stream=shared_pb2.StreamIdentifier(stream_name=stream_name.encode())
            )
        )
    )
    with pytest.raises(grpc.RpcError) as raised:
        _stub(server).List(request, timeout=10)
    error = raised.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == f"Subscription group  on stream {stream_name} does not exist."
    trailers = dict(error.trailing_metadata())
    assert trailers["exception"] == "persistent-subscription-does-not-exist"
    assert trailers["stream-name"] == stream_name
