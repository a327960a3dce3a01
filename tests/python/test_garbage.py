"""Garbage on the wire and malformed requests: the server must not crash, must not write, and
must keep serving clients. Malformed gRPC requests answer INVALID_ARGUMENT (issue 3)."""

from __future__ import annotations

import os
import socket
import struct
import uuid

import grpc
import pytest
from google.protobuf import empty_pb2
from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import KurrentDBClientError, NotFoundError
from kurrentdbclient.protos.v1 import shared_pb2, streams_pb2

from helpers import ids, new_event, unique

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAMS = "/event_store.client.streams.Streams"


def count_all(client) -> int:
    return len(list(client.read_all(filter_exclude=())))


def send_raw(port: int, payload: bytes, host: str = "127.0.0.1", read: bool = True) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return b""  # the server may hang up mid-write: fine
        if not read:
            return b""
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, OSError):
            pass
        return b"".join(chunks)


def frame(type_: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([type_, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def assert_still_serving(server, client) -> None:
    assert server.proc.poll() is None, f"server exited:\n{server.stderr()}"
    name = unique("after-garbage")
    event = new_event()
    client.append_event(name, current_version=StreamState.NO_STREAM, event=event)
    assert ids(client.get_stream(name)) == [event.id]


@pytest.fixture
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ch
    ch.close()


# --- raw TCP -----------------------------------------------------------------------------------


def test_random_bytes(server, client):
    before = count_all(client)
    for size in (1, 7, 24, 100, 4096, 70000):
        send_raw(server.port, os.urandom(size))
    send_raw(server.port, os.urandom(1000), host="::1")
    assert count_all(client) == before
    assert_still_serving(server, client)


def test_bogus_http2_preface(server, client):
    before = count_all(client)
    send_raw(server.port, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + os.urandom(200))
    send_raw(server.port, H2_PREFACE[:10])
    # Right preface, then frames that make no sense.
    send_raw(server.port, H2_PREFACE + os.urandom(500))
    send_raw(server.port, H2_PREFACE + frame(4, 0, 0, b"") + frame(1, 0x4 | 0x1, 1, os.urandom(64)))
    send_raw(server.port, H2_PREFACE + frame(4, 0, 0, b"") + frame(0, 0x1, 1, os.urandom(64)))
    send_raw(server.port, H2_PREFACE + frame(4, 0, 0, b"") + frame(0xFF, 0, 3, os.urandom(64)))
    # A frame claiming to be 16 MiB long, then nothing.
    send_raw(server.port, H2_PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01", read=False)
    assert count_all(client) == before
    assert_still_serving(server, client)


def test_headers_then_garbage_grpc_body(server, client):
    """A well-formed HTTP/2 stream to Streams/Append whose gRPC payload is not protobuf."""
    before = count_all(client)

    # HPACK, literal without indexing, new names; enough for a gRPC request.
    def lit(name: bytes, value: bytes) -> bytes:
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    headers = (
        lit(b":method", b"POST")
        + lit(b":scheme", b"http")
        + lit(b":path", f"{STREAMS}/Append".encode())
        + lit(b":authority", b"localhost")
        + lit(b"content-type", b"application/grpc")
        + lit(b"te", b"trailers")
    )
    body = os.urandom(40)
    grpc_msg = b"\x00" + struct.pack(">I", len(body)) + body
    payload = (
        H2_PREFACE + frame(4, 0, 0, b"") + frame(1, 0x4, 1, headers) + frame(0, 0x1, 1, grpc_msg)
    )
    send_raw(server.port, payload)
    assert count_all(client) == before
    assert_still_serving(server, client)


def test_many_idle_and_abandoned_connections(server, client):
    socks = []
    try:
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                s.sendall(H2_PREFACE)
            socks.append(s)
        assert_still_serving(server, client)
    finally:
        for s in socks:
            s.close()
    assert_still_serving(server, client)


def test_http1_health_live(server, client):
    reply = send_raw(
        server.port, b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 2"), reply[:200]
    send_raw(server.port, b"BREW /coffee HTCPCP/1.0\r\n\r\n" + os.urandom(100))
    send_raw(server.port, b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nxx")
    assert_still_serving(server, client)


# --- malformed gRPC requests -------------------------------------------------------------------


def identity(b: bytes) -> bytes:
    return b


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("Append", "stream_unary"),
        ("Read", "unary_stream"),
        ("Delete", "unary_unary"),
        ("Tombstone", "unary_unary"),
        ("BatchAppend", "stream_stream"),
    ],
)
def test_undecodable_protobuf_is_invalid_argument(server, client, channel, method, kind):
    before = count_all(client)
    garbage = b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(16)  # field 1, absurd length
    call = getattr(channel, kind)(
        f"{STREAMS}/{method}", request_serializer=identity, response_deserializer=identity
    )
    with pytest.raises(grpc.RpcError) as err:
        if kind.startswith("stream"):
            result = call(iter([garbage]), timeout=10)
        else:
            result = call(garbage, timeout=10)
        if kind.endswith("stream"):
            list(result)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
        err.value.code(),
        err.value.details(),
    )
    assert count_all(client) == before
    assert_still_serving(server, client)


def append_call(channel):
    return channel.stream_unary(
        f"{STREAMS}/Append",
        request_serializer=streams_pb2.AppendReq.SerializeToString,
        response_deserializer=streams_pb2.AppendResp.FromString,
    )


def options(stream: str) -> streams_pb2.AppendReq:
    return streams_pb2.AppendReq(
        options=streams_pb2.AppendReq.Options(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode()),
            any=shared_pb2.Empty(),
        )
    )


def proposed(id_=None, metadata=None) -> streams_pb2.AppendReq:
    return streams_pb2.AppendReq(
        proposed_message=streams_pb2.AppendReq.ProposedMessage(
            id=id_ if id_ is not None else shared_pb2.UUID(string=str(uuid.uuid4())),
            metadata=metadata
            if metadata is not None
            else {"type": "T", "content-type": "application/json"},
            custom_metadata=b"",
            data=b"{}",
        )
    )


def assert_append_refused(server, client, channel, requests, stream) -> None:
    before = count_all(client)
    with pytest.raises(grpc.RpcError) as err:
        append_call(channel)(iter(requests), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
        err.value.code(),
        err.value.details(),
    )
    assert err.value.details(), "no message"
    with pytest.raises(NotFoundError):
        client.get_stream(stream)
    assert count_all(client) == before
    assert_still_serving(server, client)


def test_append_without_type_metadata(server, client, channel):
    s = unique("no-type")
    # A valid event first: the whole append must be refused, not just the bad event.
    reqs = [options(s), proposed(), proposed(metadata={"content-type": "application/json"})]
    assert_append_refused(server, client, channel, reqs, s)


def test_append_without_content_type_metadata(server, client, channel):
    s = unique("no-ct")
    assert_append_refused(
        server, client, channel, [options(s), proposed(metadata={"type": "T"})], s
    )


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "0123456789abcdef0123456789abcdefXX"])
def test_append_with_bad_uuid(server, client, channel, bad):
    s = unique("bad-uuid")
    reqs = [options(s), proposed(), proposed(id_=shared_pb2.UUID(string=bad))]
    assert_append_refused(server, client, channel, reqs, s)


def test_append_without_options(server, client, channel):
    s = unique("no-options")
    assert_append_refused(server, client, channel, [proposed(), proposed()], s)


def test_append_with_options_twice(server, client, channel):
    s = unique("options-twice")
    assert_append_refused(
        server, client, channel, [options(s), proposed(), options(s), proposed()], s
    )


def test_batch_append_without_type_writes_nothing(server, client, channel):
    s = unique("batch-no-type")
    before = count_all(client)
    req = streams_pb2.BatchAppendReq(
        correlation_id=shared_pb2.UUID(string=str(uuid.uuid4())),
        options=streams_pb2.BatchAppendReq.Options(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=s.encode()),
            any=empty_pb2.Empty(),
        ),
        proposed_messages=[
            streams_pb2.BatchAppendReq.ProposedMessage(
                id=shared_pb2.UUID(string=str(uuid.uuid4())),
                metadata={"content-type": "application/json"},
                data=b"{}",
            )
        ],
        is_final=True,
    )
    call = channel.stream_stream(
        f"{STREAMS}/BatchAppend",
        request_serializer=streams_pb2.BatchAppendReq.SerializeToString,
        response_deserializer=streams_pb2.BatchAppendResp.FromString,
    )
    try:
        responses = list(call(iter([req]), timeout=10))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    else:
        assert len(responses) == 1
        assert responses[0].WhichOneof("result") == "error", responses[0]
        assert responses[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], responses[0]
    with pytest.raises(NotFoundError):
        client.get_stream(s)
    assert count_all(client) == before
    assert_still_serving(server, client)


def test_read_without_options(server, client, channel):
    call = channel.unary_stream(
        f"{STREAMS}/Read",
        request_serializer=streams_pb2.ReadReq.SerializeToString,
        response_deserializer=streams_pb2.ReadResp.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        list(call(streams_pb2.ReadReq(), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
        err.value.code(),
        err.value.details(),
    )
    assert_still_serving(server, client)


def test_read_all_with_bad_filter_regex(server, client):
    with pytest.raises(KurrentDBClientError) as err:
        list(client.read_all(filter_include=("(unclosed",)))
    assert "INVALID_ARGUMENT" in str(err.value), err.value
    assert_still_serving(server, client)


def test_unknown_method(server, client, channel):
    call = channel.unary_unary(
        "/event_store.client.streams.Streams/NoSuchMethod",
        request_serializer=identity,
        response_deserializer=identity,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_still_serving(server, client)
