"""Small helpers shared by the test modules."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence

from kurrentdbclient import NewEvent, RecordedEvent

# Deadline for every subscription in the tests: a subscription that stops delivering makes the
# test fail with GrpcDeadlineExceededError instead of hanging the run.
SUB_TIMEOUT = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_event(type_: str = "OrderCreated", **kwargs) -> NewEvent:
    """A JSON event with random data and metadata, so round trips are checked byte for byte."""
    data = kwargs.pop("data", None)
    if data is None:
        data = json.dumps({"n": os.urandom(8).hex()}).encode()
    metadata = kwargs.pop("metadata", None)
    if metadata is None:
        metadata = json.dumps({"m": os.urandom(4).hex()}).encode()
    return NewEvent(type=type_, data=data, metadata=metadata, **kwargs)


def new_events(n: int, type_: str = "OrderCreated") -> list[NewEvent]:
    return [new_event(type_) for _ in range(n)]


def ids(events: Iterable[NewEvent | RecordedEvent]) -> list[uuid.UUID]:
    return [e.id for e in events]


def is_security_stream(name: str) -> bool:
    """The streams that hold users (and their metadata): a new server's $all begins with
    the events that create its built-in users admin and ops, as KurrentDB's does."""
    name = name[2:] if name.startswith("$$") else name
    return name in ("$users", "$users-password-notifications", "$settings") or name.startswith(
        "$user-"
    )


def without_users(records: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    return [r for r in records if not is_security_stream(r.stream_name)]


def real_events(items: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    """Drops Checkpoint and CaughtUp markers."""
    return [e for e in items if not (e.is_checkpoint or e.is_caught_up)]


def read_until_caught_up(subscription) -> list[RecordedEvent]:
    """Events received before the subscription's caught-up marker (needs include_caught_up)."""
    got = []
    for item in subscription:
        if item.is_caught_up:
            return got
        if not item.is_checkpoint:
            got.append(item)
    raise AssertionError(f"subscription ended before caught_up; got {len(got)} events")


def read_until_id(subscription, last_id: uuid.UUID, keep_markers: bool = False) -> list:
    """Everything the subscription delivers up to and including the event with `last_id`."""
    got = []
    for item in subscription:
        if keep_markers or not (item.is_checkpoint or item.is_caught_up):
            got.append(item)
        if item.id == last_id and not (item.is_checkpoint or item.is_caught_up):
            return got
    raise AssertionError(f"subscription ended before event {last_id}; got {len(got)} items")


def assert_same_events(recorded: Sequence[RecordedEvent], proposed: Sequence[NewEvent]) -> None:
    """Ids, types, data, metadata and content types match, in order."""
    assert ids(recorded) == ids(proposed)
    for r, p in zip(recorded, proposed, strict=True):
        assert r.type == p.type
        assert r.data == p.data
        assert r.metadata == p.metadata
        assert r.content_type == p.content_type


def assert_no_duplicates(events: Sequence[RecordedEvent]) -> None:
    seen = ids(events)
    assert len(seen) == len(set(seen)), "duplicate events delivered"
