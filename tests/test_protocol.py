"""The wire protocol: headers round-trip, and every malformed message is a ProtocolError with a code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vrstyle.transport import protocol as P


def request(count=2, height=40, width=48, channels=3, stats_channels=144, **fields) -> tuple[P.Header, list]:
    header = P.Header(P.STYLIZE, P.FLAG_STATS, request_id=7, frame_id=3, first_tile=4, count=count, height=height,
                      width=width, channels=channels, dtype=P.DTYPE_UINT8, crop=8, margin=12,
                      stats_channels=stats_channels, style="candy")
    header = dataclasses.replace(header, **fields)
    pixels = np.zeros((count, height, width, channels), np.uint8)
    stats = np.ones((2, stats_channels), np.float32)
    return header, P.request_frames(header, pixels, stats, None)


def test_header_round_trips_every_field():
    header = P.Header(P.RESULT, P.FLAG_SHM | P.FLAG_REDISPATCHED, 2**63, 5, 2**64 - 1, 123, 9, 2, 100, 200, 3, 1,
                      8, 12, 1600, 0, 456, 789, "rain_princess/binary")
    assert P.Header.unpack(header.pack()) == header
    assert len(header.pack()) == P.HEADER_STRUCT.size


def test_a_valid_request_parses_without_copying_pixels():
    header, frames = request()
    parsed = P.parse_request(frames)
    assert parsed.header == header and parsed.stats.shape == (2, 144) and parsed.shm is None
    assert len(parsed.pixels) == 2 * 40 * 48 * 3


def damaged(change) -> list:
    _, frames = request()
    return change(frames)


def with_header(**fields):
    return lambda frames: [dataclasses.replace(P.Header.unpack(frames[0]), **fields).pack(), *frames[1:]]


def raw_header(offset: int, value: bytes):
    def change(frames):
        data = bytearray(frames[0])
        data[offset:offset + len(value)] = value
        return [bytes(data), *frames[1:]]
    return change


@pytest.mark.parametrize("change,code,message", [
    (lambda f: [], P.E_MALFORMED, "empty message"),
    (lambda f: [f[0][:-1], *f[1:]], P.E_MALFORMED, "header has"),
    (raw_header(0, b"XXXX"), P.E_MALFORMED, "bad magic"),
    (raw_header(4, bytes([99])), P.E_VERSION, "version 99"),
    (raw_header(5, bytes([200])), P.E_KIND, "unknown message kind 200"),
    (raw_header(6, b"\x00\x80"), P.E_MALFORMED, "unknown flags"),
    (with_header(kind=P.RESULT), P.E_KIND, "expected a STYLIZE or MEASURE"),
    (with_header(style=""), P.E_STYLE, "names no style"),
    (raw_header(P.HEADER_STRUCT.size - P.MAX_STYLE_BYTES, b"\xff\xfe"), P.E_MALFORMED, "not UTF-8"),
    (raw_header(P.HEADER_STRUCT.size - P.MAX_STYLE_BYTES, b"a\x01"), P.E_MALFORMED, "control characters"),
    (with_header(count=0), P.E_LIMIT, "0 tiles"),
    (with_header(count=P.MAX_TILES_PER_REQUEST + 1), P.E_LIMIT, "tiles in one request"),
    (with_header(height=P.MAX_TILE_SIDE + 1), P.E_LIMIT, "tile of"),
    (with_header(count=200, height=1024, width=1024, channels=4), P.E_LIMIT, "exceeds"),
    (with_header(dtype=2), P.E_DTYPE, "dtype code 2"),
    (with_header(channels=1), P.E_PAYLOAD, "1 channels"),
    (with_header(crop=20), P.E_PAYLOAD, "leave nothing"),
    (with_header(flags=P.FLAG_STATS | P.FLAG_REDISPATCHED), P.E_MALFORMED, "REDISPATCHED"),
    (with_header(stats_channels=0), P.E_LIMIT, "statistics channels"),
    (with_header(kind=P.MEASURE), P.E_MALFORMED, "only STYLIZE requests carry statistics"),
    (lambda f: f[:2], P.E_MALFORMED, "has 2 parts, expected 3"),
    (lambda f: [*f, b"extra"], P.E_MALFORMED, "has 4 parts"),
    (lambda f: [f[0], bytes(f[1])[:-1], f[2]], P.E_PAYLOAD, "pixel payload has"),
    (lambda f: [f[0], bytes(f[1]) * 2, f[2]], P.E_PAYLOAD, "pixel payload has"),
    (lambda f: [f[0], f[1], np.ones((2, 143), np.float32)], P.E_STATS, "statistics part has"),
    (lambda f: [f[0], f[1], np.ones((2, 144), np.float64)], P.E_STATS, "statistics part has"),
    (lambda f: [f[0], f[1], np.full((2, 144), np.nan, np.float32)], P.E_STATS, "finite"),
    (lambda f: [f[0], f[1], -np.ones((2, 144), np.float32)], P.E_STATS, "non-negative"),
])
def test_malformed_requests_are_refused_with_a_code(change, code, message):
    with pytest.raises(P.ProtocolError, match=message) as caught:
        P.parse_request(damaged(change))
    assert caught.value.code == code


def test_shared_memory_descriptors_are_checked():
    header, _ = request()
    header = dataclasses.replace(header, flags=P.FLAG_SHM)
    in_bytes, out_bytes = 2 * 40 * 48 * 3, 2 * 24 * 32 * 3
    good = P.ShmDescriptor("vrs_1a_2b", 0, in_bytes, in_bytes, out_bytes)
    assert P.parse_request([header.pack(), good.pack()]).shm == good
    for bad, message in [(dataclasses.replace(good, name="../etc/passwd"), "not a vrstyle segment"),
                         (dataclasses.replace(good, in_bytes=in_bytes - 1), "do not match"),
                         (dataclasses.replace(good, out_bytes=0), "do not match")]:
        with pytest.raises(P.ProtocolError, match=message):
            P.parse_request([header.pack(), bad.pack()])
    with pytest.raises(P.ProtocolError, match="descriptor has"):
        P.parse_request([header.pack(), good.pack()[:-1]])


def test_worker_info_is_validated():
    good = {"styles": {"candy": 1600}, "host": 5, "device": "cuda:0", "credit": 2, "pid": 42}
    assert P.parse_worker_info(P.encode_json(good)) == good
    for change, message in [({"styles": {}}, "1..256 styles"), ({"styles": {"candy": 0}}, "channel count"),
                            ({"styles": {"a\x00": 3}}, "bad style name"), ({"credit": 0}, "'credit'"),
                            ({"host": -1}, "'host'"), ({"device": 7}, "'device'")]:
        with pytest.raises(P.ProtocolError, match=message):
            P.parse_worker_info(P.encode_json({**good, **change}))
    with pytest.raises(P.ProtocolError, match="does not parse"):
        P.parse_worker_info(b"{not json")
    with pytest.raises(P.ProtocolError, match="exceeds"):
        P.decode_json(b" " * (P.MAX_JSON_BYTES + 1))


def test_result_and_error_replies_echo_the_request():
    header, _ = request()
    tiles = np.zeros((2, 24, 32, 3), np.uint8)
    frames = P.result_frames(header, tiles, np.zeros((3, 144)), 10, 20)
    reply = P.Header.unpack(frames[0])
    assert (reply.kind, reply.request_id, reply.height, reply.width, reply.queue_us, reply.infer_us) == \
        (P.RESULT, 7, 24, 32, 10, 20)
    error = P.error_frames(P.ERROR, P.E_STYLE, "é" * 5000, header)
    assert P.Header.unpack(error[0]).request_id == 7 and len(error[1]) == P.MAX_TEXT_BYTES


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_random_bytes_never_raise_anything_but_protocol_errors(frames):
    try:
        P.parse_request(frames)
    except P.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, P.HEADER_STRUCT.size - 1), st.integers(0, 255))
def test_any_flipped_header_byte_is_caught_or_harmless(offset, value):
    header, frames = request()
    data = bytearray(frames[0])
    data[offset] = value
    try:
        parsed = P.parse_request([bytes(data), *frames[1:]])
    except P.ProtocolError:
        return
    assert len(parsed.pixels) == np.prod(parsed.header.in_shape)  # whatever passed is self-consistent
