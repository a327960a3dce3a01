#!/usr/bin/env python3
"""Writes the seed inputs of the grpc_request fuzz target into fuzz/corpus/grpc_request:
the requests of the gRPC crate's tests for AppendSession, AppendRecords and Projections
(append_session_tests.rs, append_records_tests.rs, projections_tests.rs), encoded by hand
in protobuf's wire format and framed as the target reads them (a method byte, then each
message as a 2-byte little-endian length and its bytes). Run from the repository root:
python3 fuzz/seeds/grpc_request.py"""

import pathlib
import struct
import uuid

# Indexes into METHODS of fuzz_targets/grpc_request.rs.
APPEND_SESSION = 17
APPEND_RECORDS = 18
PROJECTIONS_CREATE = 19
PROJECTIONS_UPDATE = 20
PROJECTIONS_STATE = 26


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value):
    return (value << 1) ^ (value >> 63)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string_value(text):
    # google.protobuf.Value { string_value = 3 }
    return field_bytes(3, text)


def record(event_type, stream=None, properties=()):
    out = field_bytes(1, str(uuid.UUID(int=0x1234)))
    for key, value in properties:
        out += field_bytes(2, field_bytes(1, key) + field_bytes(2, string_value(value)))
    out += field_bytes(3, field_varint(1, 1) + field_bytes(2, event_type))  # JSON schema
    out += field_bytes(4, b'{"amount":5}')
    if stream is not None:
        out += field_bytes(5, stream)
    return out


def append_request(stream, records, expected=None):
    out = field_bytes(1, stream)
    for rec in records:
        out += field_bytes(2, rec)
    if expected is not None:
        out += field_varint(3, zigzag(expected))
    return out


def check(stream, expected_state):
    inner = field_bytes(1, stream) + field_varint(2, zigzag(expected_state))
    return field_bytes(1, inner)


def append_records(records, checks):
    return b"".join(field_bytes(1, r) for r in records) + b"".join(
        field_bytes(2, c) for c in checks
    )


def frame(method, messages):
    out = bytes([method])
    for message in messages:
        out += struct.pack("<H", len(message)) + message
    return out


SEEDS = {
    "append_session_two_streams": frame(
        APPEND_SESSION,
        [
            append_request("account-a", [record("Debited", properties=[("user", "ann")])], -1),
            append_request("account-b", [record("Credited")]),
        ],
    ),
    "append_session_repeated_stream": frame(
        APPEND_SESSION,
        [append_request("twice-1", [record("E")]), append_request("twice-1", [record("E")])],
    ),
    "append_session_conflict": frame(
        APPEND_SESSION, [append_request("account-b", [record("Credited")], 7)]
    ),
    "append_records_with_checks": frame(
        APPEND_RECORDS,
        [
            append_records(
                [record("Debited", "account-a"), record("Credited", "account-b"), record("Noted", "account-a")],
                [check("course-1", 2), check("student-1", -1), check("account-a", -1)],
            )
        ],
    ),
    "append_records_states": frame(
        APPEND_RECORDS,
        [
            append_records(
                [record("E", "other-1")],
                [check("gone-1", -6), check("live-1", -4), check("any-1", -2), check("del-1", -5)],
            )
        ],
    ),
    "append_records_no_stream": frame(APPEND_RECORDS, [append_records([record("E")], [])]),
    "projections_create": frame(
        PROJECTIONS_CREATE,
        [
            field_bytes(
                1,
                field_bytes(3, field_bytes(1, "counter") + field_varint(2, 1))
                + field_bytes(4, "fromAll().when({ $init: () => ({ count: 0 }), $any: (s, e) => { s.count++; } })"),
            )
        ],
    ),
    "projections_update": frame(
        PROJECTIONS_UPDATE,
        [field_bytes(1, field_bytes(1, "counter") + field_bytes(2, "fromAll().when({})"))],
    ),
    "projections_state": frame(PROJECTIONS_STATE, [field_bytes(1, field_bytes(1, "counter"))]),
}

directory = pathlib.Path(__file__).resolve().parent.parent / "corpus" / "grpc_request"
directory.mkdir(parents=True, exist_ok=True)
for name, data in SEEDS.items():
    (directory / name).write_bytes(data)
print(f"{len(SEEDS)} seeds in {directory}")
