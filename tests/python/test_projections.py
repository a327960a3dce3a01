"""JavaScript projections through kurrentdbclient's projection calls against a real `strata serve`:
create, statistics, state, update, disable / abort / enable, reset, delete with each flag,
partitions, emitted and linked events, a hostile query beside a healthy one, the subsystem
restart and a server restart. Statuses and errors are those of the reference server
(KurrentDB.Projections.Core: `Running`, `Stopped`, `Faulted`; NOT_FOUND, ALREADY_EXISTS,
FAILED_PRECONDITION for a delete while running)."""

from __future__ import annotations

import json
import uuid

import pytest
from kurrentdbclient import NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AlreadyExistsError,
    ExceptionThrownByHandlerError,
    FailedPreconditionError,
    NotFoundError,
)

from conftest import wait_until


def category() -> str:
    # A category is what comes before the first dash of a stream name.
    return f"pycat{uuid.uuid4().hex[:10]}"


def projection_name() -> str:
    return f"py-projection-{uuid.uuid4().hex[:10]}"


def append(client, stream: str, type_: str, body: dict) -> None:
    client.append_event(
        stream,
        current_version=StreamState.ANY,
        event=NewEvent(type=type_, data=json.dumps(body).encode()),
    )


def state_of(client, name: str, partition: str = ""):
    return client.get_projection_state(name, partition).value


def wait_for_state(client, name: str, expected, partition: str = "") -> None:
    ok = wait_until(lambda: state_of(client, name, partition) == expected, timeout=20)
    assert ok, f"state of {name}/{partition!r} is {state_of(client, name, partition)!r}"


def wait_for_status(client, name: str, status: str) -> None:
    ok = wait_until(
        lambda: client.get_projection_statistics(name).status == status, timeout=20
    )
    assert ok, f"status of {name} is {client.get_projection_statistics(name).status!r}"


def counting_query(cat: str) -> str:
    return f"""
fromCategory('{cat}').when({{
    $init: function () {{ return {{ count: 0, total: 0 }}; }},
    Placed: function (state, event) {{
        state.count += 1;
        state.total += event.body.amount;
        return state;
    }}
}});
"""


def test_create_counts_events_and_reports_statistics(client):
    cat, name = category(), projection_name()
    for amount in (3, 4):
        append(client, f"{cat}-1", "Placed", {"amount": amount})
    append(client, f"{cat}-2", "Other", {"amount": 100})
    client.create_projection(name=name, query=counting_query(cat))

    wait_for_state(client, name, {"count": 2, "total": 7})
    # Live: events written after the catch-up are counted too.
    append(client, f"{cat}-2", "Placed", {"amount": 10})
    wait_for_state(client, name, {"count": 3, "total": 17})

    statistics = client.get_projection_statistics(name)
    assert statistics.name == name
    assert statistics.effective_name == name
    assert statistics.status == "Running"
    assert statistics.mode == "Continuous"
    assert statistics.state_reason == ""
    assert statistics.epoch == 0
    assert statistics.version == 0
    assert statistics.events_processed_after_restart >= 3

    names = [s.name for s in client.list_all_projection_statistics()]
    assert name in names
    assert name in [s.name for s in client.list_continuous_projection_statistics()]


def test_unknown_projection_is_not_found_for_every_call(client):
    missing = projection_name()
    with pytest.raises(NotFoundError):
        client.get_projection_statistics(missing)
    with pytest.raises(NotFoundError):
        client.get_projection_state(missing)
    with pytest.raises(NotFoundError):
        client.enable_projection(missing)
    with pytest.raises(NotFoundError):
        client.disable_projection(missing)
    with pytest.raises(NotFoundError):
        client.abort_projection(missing)
    with pytest.raises(NotFoundError):
        client.reset_projection(missing)
    with pytest.raises(NotFoundError):
        client.update_projection(missing, query="fromAll().when({})")
    with pytest.raises(NotFoundError):
        client.delete_projection(missing)


def test_a_second_create_with_the_same_name_already_exists(client):
    cat, name = category(), projection_name()
    client.create_projection(name=name, query=counting_query(cat))
    with pytest.raises(AlreadyExistsError):
        client.create_projection(name=name, query=counting_query(cat))


def test_tracking_emitted_streams_without_emit_is_refused_before_the_name_is_looked_up(client):
    # KurrentDB's ProjectionConfig throws ("EmitEnabled must be true if TrackEmittedStreams
    # is true."), before the existing name is noticed; its gRPC host answers UNKNOWN
    # "Exception was thrown by handler.", which the client raises as this error.
    cat, name = category(), projection_name()
    with pytest.raises(ExceptionThrownByHandlerError):
        client.create_projection(
            name=name, query=counting_query(cat), emit_enabled=False, track_emitted_streams=True
        )
    with pytest.raises(NotFoundError):
        client.get_projection_statistics(name)
    client.create_projection(
        name=name, query=counting_query(cat), emit_enabled=True, track_emitted_streams=True
    )
    with pytest.raises(ExceptionThrownByHandlerError):
        client.create_projection(
            name=name, query=counting_query(cat), emit_enabled=False, track_emitted_streams=True
        )


def test_an_empty_query_faults_and_deletes_without_a_disable(client):
    # kurrentdbclient's own suite creates projections with query="" and deletes them at
    # once: the reference accepts the query, and the projection, reading nothing, is not
    # running (so no FAILED_PRECONDITION).
    name = projection_name()
    client.create_projection(name=name, query="")
    wait_for_status(client, name, "Faulted")
    assert "reads no events" in client.get_projection_statistics(name).state_reason
    client.delete_projection(
        name, delete_emitted_streams=True, delete_state_stream=True, delete_checkpoint_stream=True
    )
    with pytest.raises(NotFoundError):
        client.get_projection_statistics(name)
    with pytest.raises(NotFoundError):
        client.delete_projection(name)


def test_disable_stops_and_enable_resumes_from_the_checkpoint(client):
    cat, name = category(), projection_name()
    append(client, f"{cat}-1", "Placed", {"amount": 1})
    client.create_projection(name=name, query=counting_query(cat))
    wait_for_state(client, name, {"count": 1, "total": 1})

    client.disable_projection(name)
    assert client.get_projection_statistics(name).status == "Stopped"
    append(client, f"{cat}-1", "Placed", {"amount": 5})
    # Stopped: the new event is not counted.
    assert state_of(client, name) == {"count": 1, "total": 1}

    client.enable_projection(name)
    wait_for_state(client, name, {"count": 2, "total": 6})
    assert client.get_projection_statistics(name).status == "Running"

    client.abort_projection(name)
    assert client.get_projection_statistics(name).status == "Stopped"
    client.enable_projection(name)
    append(client, f"{cat}-1", "Placed", {"amount": 10})
    wait_for_state(client, name, {"count": 3, "total": 16})


def test_update_replaces_the_query_and_bumps_the_version(client):
    cat, name = category(), projection_name()
    append(client, f"{cat}-1", "Placed", {"amount": 2})
    client.create_projection(name=name, query=counting_query(cat))
    wait_for_state(client, name, {"count": 1, "total": 2})

    doubled = counting_query(cat).replace("state.count += 1", "state.count += 2")
    client.update_projection(name, query=doubled)
    assert client.get_projection_statistics(name).version == 1
    # The update keeps the checkpoint: only new events see the new query.
    append(client, f"{cat}-1", "Placed", {"amount": 3})
    wait_for_state(client, name, {"count": 3, "total": 5})

    # A reset starts a new epoch: every event again, under the new query.
    client.reset_projection(name)
    assert client.get_projection_statistics(name).epoch == 1
    wait_for_state(client, name, {"count": 4, "total": 5})


def test_a_reset_while_stopped_forgets_the_state_until_enabled(client):
    # From kurrentdbclient's own projection example: after a disable, a reset leaves the
    # projection stopped with no state ({} as the reference answers, not null) and no events
    # processed; an enable then counts everything again.
    cat, name = category(), projection_name()
    for amount in (1, 2, 3):
        append(client, f"{cat}-1", "Placed", {"amount": amount})
    client.create_projection(name=name, query=counting_query(cat))
    wait_for_state(client, name, {"count": 3, "total": 6})
    client.disable_projection(name)
    wait_for_status(client, name, "Stopped")

    client.reset_projection(name)
    statistics = client.get_projection_statistics(name)
    assert statistics.status == "Stopped"
    assert statistics.epoch == 1
    assert statistics.events_processed_after_restart == 0
    assert state_of(client, name) == {}

    client.enable_projection(name)
    wait_for_state(client, name, {"count": 3, "total": 6})


def test_delete_is_refused_while_running_and_removes_the_chosen_streams(client):
    cat, name = category(), projection_name()
    query = f"""
fromCategory('{cat}').when({{
    $init: function () {{ return {{ n: 0 }}; }},
    Placed: function (state, event) {{
        state.n += 1;
        emit('{cat}out-' + event.streamId, 'Counted', {{ n: state.n }});
        return state;
    }}
}}).outputState();
"""
    append(client, f"{cat}-1", "Placed", {"amount": 1})
    client.create_projection(
        name=name, query=query, emit_enabled=True, track_emitted_streams=True
    )
    wait_for_state(client, name, {"n": 1})
    emitted = f"{cat}out-{cat}-1"
    assert [e.type for e in client.get_stream(emitted)] == ["Counted"]
    assert json.loads(client.get_stream(emitted)[0].data) == {"n": 1}
    assert [json.loads(e.data) for e in client.get_stream(f"$projections-{name}-result")] == [
        {"n": 1}
    ]

    with pytest.raises(FailedPreconditionError):
        client.delete_projection(name)
    assert client.get_projection_statistics(name).status == "Running"

    client.disable_projection(name)
    client.delete_projection(
        name,
        delete_emitted_streams=True,
        delete_state_stream=True,
        delete_checkpoint_stream=True,
    )
    with pytest.raises(NotFoundError):
        client.get_projection_statistics(name)
    for stream in (
        emitted,
        f"$projections-{name}-checkpoint",
        f"$projections-{name}-emittedstreams",
    ):
        with pytest.raises(NotFoundError):
            client.get_stream(stream)
    # As on the reference (and kurrentdbclient's own suite): the results stay.
    assert [json.loads(e.data) for e in client.get_stream(f"$projections-{name}-result")] == [
        {"n": 1}
    ]
    # A second delete finds nothing.
    with pytest.raises(NotFoundError):
        client.delete_projection(name)


def test_delete_without_flags_keeps_the_streams(client):
    cat, name = category(), projection_name()
    append(client, f"{cat}-1", "Placed", {"amount": 4})
    client.create_projection(name=name, query=counting_query(cat).rstrip().rstrip(";") + ".outputState();")
    wait_for_state(client, name, {"count": 1, "total": 4})
    client.disable_projection(name)
    client.delete_projection(name)
    with pytest.raises(NotFoundError):
        client.get_projection_statistics(name)
    checkpoint = client.get_stream(f"$projections-{name}-checkpoint")
    assert checkpoint[-1].type == "$ProjectionCheckpoint"
    assert json.loads(checkpoint[-1].data)["state"] == {"count": 1, "total": 4}
    result = client.get_stream(f"$projections-{name}-result")
    assert json.loads(result[-1].data) == {"count": 1, "total": 4}
    # The name is free again.
    client.create_projection(name=name, query=counting_query(cat))


def test_state_by_partition_with_foreach_stream_and_partition_by(client):
    cat = category()
    for stream, amount in (("a", 1), ("b", 2), ("a", 3)):
        append(client, f"{cat}-{stream}", "Placed", {"amount": amount, "kind": stream})
    by_stream = projection_name()
    client.create_projection(name=by_stream, query=counting_query(cat).replace(
        f"fromCategory('{cat}')", f"fromCategory('{cat}').foreachStream()"
    ))
    wait_for_state(client, by_stream, {"count": 2, "total": 4}, partition=f"{cat}-a")
    wait_for_state(client, by_stream, {"count": 1, "total": 2}, partition=f"{cat}-b")
    assert wait_until(
        lambda: client.get_projection_statistics(by_stream).partitions_cached == 2
    )

    by_kind = projection_name()
    query = counting_query(cat).replace(
        ".when(", ".partitionBy(function (e) { return 'kind-' + e.body.kind; }).when("
    )
    client.create_projection(name=by_kind, query=query)
    wait_for_state(client, by_kind, {"count": 2, "total": 4}, partition="kind-a")
    wait_for_state(client, by_kind, {"count": 1, "total": 2}, partition="kind-b")
    # The state is served from the running projection; the catalog is written with its
    # next checkpoint or when it catches up, a moment later.
    partitions = f"$projections-{by_kind}-partitions"
    assert wait_until(lambda: _count(client, partitions) == 2, timeout=20)
    catalog = client.get_stream(partitions)
    assert [e.data for e in catalog] == [b"kind-a", b"kind-b"]


def test_link_to_and_from_streams(client):
    cat, name = category(), projection_name()
    source = f"{cat}-1"
    append(client, source, "Placed", {"amount": 1})
    append(client, source, "Cancelled", {})
    append(client, source, "Placed", {"amount": 2})
    query = f"""
fromStreams(['{source}']).when({{
    Placed: function (state, event) {{ linkTo('{cat}placed', event); }}
}});
"""
    client.create_projection(name=name, query=query, emit_enabled=True)
    assert wait_until(lambda: _count(client, f"{cat}placed") == 2, timeout=20)
    links = client.get_stream(f"{cat}placed")
    assert [e.type for e in links] == ["$>", "$>"]
    assert [e.data for e in links] == [f"0@{source}".encode(), f"2@{source}".encode()]
    resolved = client.get_stream(f"{cat}placed", resolve_links=True)
    assert [json.loads(e.data) for e in resolved] == [{"amount": 1}, {"amount": 2}]


def _count(client, stream: str) -> int:
    try:
        return len(client.get_stream(stream))
    except NotFoundError:
        return 0


def test_emit_without_emit_enabled_faults_the_projection(client):
    cat, name = category(), projection_name()
    append(client, f"{cat}-1", "Placed", {"amount": 1})
    query = f"fromCategory('{cat}').when({{ $any: function (s, e) {{ emit('x', 'y', {{}}); }} }});"
    client.create_projection(name=name, query=query)
    wait_for_status(client, name, "Faulted")
    assert "emit" in client.get_projection_statistics(name).state_reason


def test_hostile_queries_fault_alone_and_the_server_keeps_serving(client):
    cat = category()
    append(client, f"{cat}-1", "Placed", {"amount": 7})
    hostile = {
        "loop": f"fromCategory('{cat}').when({{ $any: function (s, e) {{ while (true) {{}} }} }});",
        "syntax": "fromAll().when({ $any: function (s, e) { return s + ; } });",
        "eval": f"fromCategory('{cat}').when({{ $any: function (s, e) {{ return eval('1'); }} }});",
    }
    names = {}
    for kind, query in hostile.items():
        names[kind] = projection_name()
        client.create_projection(name=names[kind], query=query)
    healthy = projection_name()
    client.create_projection(name=healthy, query=counting_query(cat))

    for kind, name in names.items():
        wait_for_status(client, name, "Faulted")
        assert client.get_projection_statistics(name).state_reason != "", kind
    wait_for_state(client, healthy, {"count": 1, "total": 7})
    assert client.get_projection_statistics(healthy).status == "Running"

    # A faulted projection is enabled again after a fixing update.
    client.update_projection(names["syntax"], query=counting_query(cat))
    client.enable_projection(names["syntax"])
    wait_for_state(client, names["syntax"], {"count": 1, "total": 7})
    assert client.get_projection_statistics(names["syntax"]).status == "Running"


def test_restart_subsystem_keeps_projections_running(client):
    cat, name = category(), projection_name()
    append(client, f"{cat}-1", "Placed", {"amount": 1})
    client.create_projection(name=name, query=counting_query(cat))
    wait_for_state(client, name, {"count": 1, "total": 1})
    client.restart_projections_subsystem()
    append(client, f"{cat}-1", "Placed", {"amount": 1})
    wait_for_state(client, name, {"count": 2, "total": 2})
    assert client.get_projection_statistics(name).status == "Running"


def test_projections_survive_a_server_restart(server_factory):
    first = server_factory().start()
    cat, running, stopped = category(), projection_name(), projection_name()
    c = first.client()
    append(c, f"{cat}-1", "Placed", {"amount": 1})
    c.create_projection(name=running, query=counting_query(cat))
    c.create_projection(name=stopped, query=counting_query(cat))
    wait_for_state(c, running, {"count": 1, "total": 1})
    wait_for_state(c, stopped, {"count": 1, "total": 1})
    c.disable_projection(stopped)
    c.close()
    assert first.stop() == 0

    second = server_factory(first.data_dir).start()
    c = second.client()
    try:
        assert c.get_projection_statistics(stopped).status == "Stopped"
        assert c.get_projection_statistics(running).status == "Running"
        append(c, f"{cat}-1", "Placed", {"amount": 2})
        # Resumed from its checkpoint: the first event is not counted twice.
        wait_for_state(c, running, {"count": 2, "total": 3})
        assert state_of(c, stopped) == {"count": 1, "total": 1}
    finally:
        c.close()
