"""System streams ($ce-, $et-) and the $idx- filters of $all, read with kurrentdbclient: link
events as KurrentDB's standard projections write them, resolved or not, catch-up
subscriptions into live, and persistent subscriptions with resolve_links."""

from __future__ import annotations

from kurrentdbclient import StreamState

from helpers import SUB_TIMEOUT, assert_no_duplicates, ids, new_event, read_until_caught_up


def write_orders(client) -> tuple[list, list]:
    """Order events in two streams with other events between; returns (orders, placed)."""
    orders, placed = [], []
    writes = [
        ("orders-1", "OrderPlaced"),
        ("cart-1", "ItemAdded"),
        ("orders-2", "OrderPlaced"),
        ("orders-1", "OrderShipped"),
        ("cart-1", "OrderPlaced"),
        ("orders-2", "OrderPaid"),
    ]
    for stream, type_ in writes:
        event = new_event(type_)
        client.append_event(stream, current_version=StreamState.ANY, event=event)
        if stream.startswith("orders-"):
            orders.append(event)
        if type_ == "OrderPlaced":
            placed.append(event)
    return orders, placed


def test_category_and_event_type_streams_with_and_without_resolve_links(fresh_client):
    client = fresh_client
    orders, placed = write_orders(client)

    links = client.get_stream("$ce-orders")
    assert [e.type for e in links] == ["$>"] * 4
    assert [e.stream_position for e in links] == [0, 1, 2, 3]
    assert [e.data for e in links] == [b"0@orders-1", b"0@orders-2", b"1@orders-1", b"1@orders-2"]
    assert all(e.link is None for e in links)

    resolved = client.get_stream("$ce-orders", resolve_links=True)
    assert ids(resolved) == ids(orders)
    assert [e.data for e in resolved] == [e.data for e in orders]
    assert [e.link.stream_position for e in resolved] == [0, 1, 2, 3]
    assert all(e.link.stream_name == "$ce-orders" for e in resolved)
    # The read event is at its link's position.
    assert [e.commit_position for e in resolved] == [e.link.commit_position for e in resolved]

    backwards = client.get_stream("$ce-orders", resolve_links=True, backwards=True, limit=2)
    assert ids(backwards) == ids(orders[2:][::-1])
    middle = client.get_stream("$ce-orders", resolve_links=True, stream_position=1, limit=2)
    assert ids(middle) == ids(orders[1:3])

    by_type = client.get_stream("$et-OrderPlaced", resolve_links=True)
    assert ids(by_type) == ids(placed)
    assert [e.link.stream_position for e in by_type] == [0, 1, 2]


def test_category_subscription_resolves_links_through_catch_up_into_live(fresh_client):
    client = fresh_client
    orders, _ = write_orders(client)
    sub = client.subscribe_to_stream(
        "$ce-orders", resolve_links=True, include_caught_up=True, timeout=SUB_TIMEOUT
    )
    try:
        history = read_until_caught_up(sub)
        assert ids(history) == ids(orders)
        client.append_event("cart-2", current_version=StreamState.ANY, event=new_event("Other"))
        live = [new_event("OrderPlaced"), new_event("OrderPaid")]
        client.append_events("orders-3", current_version=StreamState.NO_STREAM, events=live)
        got = []
        for event in sub:
            if event.is_checkpoint or event.is_caught_up:
                continue
            got.append(event)
            if len(got) == len(live):
                break
        assert ids(got) == ids(live)
        assert [e.link.stream_position for e in got] == [4, 5]
        assert_no_duplicates(history + got)
    finally:
        sub.stop()


def test_index_filters_of_all(fresh_client):
    client = fresh_client
    orders, placed = write_orders(client)
    for prefix, expected in [("$idx-ce-orders", orders), ("$idx-et-OrderPlaced", placed)]:
        read = client.read_all(
            filter_include=[prefix], filter_by_stream_name=True, filter_by_prefix=True
        )
        assert ids(read) == ids(expected), prefix
        backwards = client.read_all(
            backwards=True,
            filter_include=[prefix],
            filter_by_stream_name=True,
            filter_by_prefix=True,
        )
        assert ids(backwards) == ids(expected[::-1]), prefix

    sub = client.subscribe_to_all(
        filter_include=["$idx-ce-orders"],
        filter_by_stream_name=True,
        filter_by_prefix=True,
        include_caught_up=True,
        timeout=SUB_TIMEOUT,
    )
    try:
        assert ids(read_until_caught_up(sub)) == ids(orders)
        client.append_event("cart-3", current_version=StreamState.ANY, event=new_event("Other"))
        live = new_event("OrderPlaced")
        client.append_event("orders-9", current_version=StreamState.ANY, event=live)
        for event in sub:
            if not (event.is_checkpoint or event.is_caught_up):
                assert event.id == live.id
                break
    finally:
        sub.stop()


def test_persistent_subscriptions_to_a_category_deliver_each_order_once_per_group(fresh_client):
    client = fresh_client
    orders, _ = write_orders(client)
    for group in ("billing", "shipping"):
        client.create_subscription_to_stream(
            group, "$ce-orders", from_end=False, resolve_links=True
        )
    more = [new_event("OrderPlaced") for _ in range(3)]
    client.append_events("orders-4", current_version=StreamState.NO_STREAM, events=more)
    orders += more
    for group in ("billing", "shipping"):
        sub = client.read_subscription_to_stream(group, "$ce-orders", timeout=SUB_TIMEOUT)
        try:
            got = []
            for event in sub:
                assert event.link is not None and event.link.stream_name == "$ce-orders"
                got.append(event)
                sub.ack(event)
                if len(got) == len(orders):
                    break
            assert ids(got) == ids(orders), group
            assert sorted(e.link.stream_position for e in got) == list(range(len(orders)))
            assert_no_duplicates(got)
        finally:
            sub.stop()
