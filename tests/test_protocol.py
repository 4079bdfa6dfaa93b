"""The wire protocol: headers round-trip, and every malformed message is a ProtocolError with a code."""

from __future__ import annotations

import dataclasses
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vrstyle.transport import codec
from vrstyle.transport import protocol as P


def request(count=2, height=40, width=48, channels=3, stats_channels=144, **fields) -> tuple[P.Header, list]:
    header = P.Header(P.Kind.STYLIZE, P.FLAG_STATS, request_id=7, frame_id=3, first_tile=4, count=count, height=height,
                      width=width, channels=channels, dtype=P.DTYPE_UINT8, crop=8, margin=12,
                      stats_channels=stats_channels, style="candy")
    header = dataclasses.replace(header, **fields)
    pixels = np.zeros((count, height, width, channels), np.uint8)
    stats = np.ones((2, stats_channels), np.float32)
    return header, P.request_frames(header, pixels, stats, None)


def test_header_round_trips_every_field():
    header = P.Header(P.Kind.RESULT, P.FLAG_SHM | P.FLAG_REDISPATCHED, 2**63, 5, 2**64 - 1, 123, 9, 2, 100, 200, 3, 1,
                      8, 12, 1600, 0, 456, 789, 77, 31, "rain_princess/binary")
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
    (lambda f: [], P.Code.MALFORMED, "empty message"),
    (lambda f: [f[0][:-1], *f[1:]], P.Code.MALFORMED, "header has"),
    (raw_header(0, b"XXXX"), P.Code.MALFORMED, "bad magic"),
    (raw_header(4, bytes([99])), P.Code.VERSION, "version 99"),
    (raw_header(5, bytes([200])), P.Code.KIND, "unknown message kind 200"),
    (raw_header(6, b"\x00\x80"), P.Code.MALFORMED, "unknown flags"),
    (with_header(kind=P.Kind.RESULT), P.Code.KIND, "expected a STYLIZE or MEASURE"),
    (with_header(style=""), P.Code.STYLE, "names no style"),
    (raw_header(P.HEADER_STRUCT.size - P.MAX_STYLE_BYTES, b"\xff\xfe"), P.Code.MALFORMED, "not UTF-8"),
    (raw_header(P.HEADER_STRUCT.size - P.MAX_STYLE_BYTES, b"a\x01"), P.Code.MALFORMED, "control characters"),
    (with_header(count=0), P.Code.LIMIT, "0 tiles"),
    (with_header(count=P.MAX_TILES_PER_REQUEST + 1), P.Code.LIMIT, "tiles in one request"),
    (with_header(height=P.MAX_TILE_SIDE + 1), P.Code.LIMIT, "tile of"),
    (with_header(count=200, height=1024, width=1024, channels=4), P.Code.LIMIT, "exceeds"),
    (with_header(dtype=2), P.Code.DTYPE, "dtype code 2"),
    (with_header(channels=1), P.Code.PAYLOAD, "1 channels"),
    (with_header(crop=20), P.Code.PAYLOAD, "leave nothing"),
    (with_header(flags=P.FLAG_STATS | P.FLAG_REDISPATCHED), P.Code.MALFORMED, "REDISPATCHED"),
    (with_header(flags=P.FLAG_STATS | P.FLAG_BOTTOM_UP), P.Code.MALFORMED, "BOTTOM_UP is for frame requests"),
    (with_header(stats_channels=0), P.Code.LIMIT, "statistics channels"),
    (with_header(measure_to=3), P.Code.MALFORMED, "measure_to 3 needs a MEASURE request"),
    (with_header(flags=P.FLAG_STATS | P.FLAG_BOUNDS), P.Code.MALFORMED, "has 3 parts, expected 4"),
    (lambda f: f[:2], P.Code.MALFORMED, "has 2 parts, expected 3"),
    (lambda f: [*f, b"extra"], P.Code.MALFORMED, "has 4 parts"),
    (lambda f: [f[0], bytes(f[1])[:-1], f[2]], P.Code.PAYLOAD, "pixel payload has"),
    (lambda f: [f[0], bytes(f[1]) * 2, f[2]], P.Code.PAYLOAD, "pixel payload has"),
    (lambda f: [f[0], f[1], np.ones((2, 143), np.float32)], P.Code.STATS, "statistics part has"),
    (lambda f: [f[0], f[1], np.ones((2, 144), np.float64)], P.Code.STATS, "statistics part has"),
    (lambda f: [f[0], f[1], np.full((2, 144), np.nan, np.float32)], P.Code.STATS, "finite"),
    (lambda f: [f[0], f[1], -np.ones((2, 144), np.float32)], P.Code.STATS, "non-negative"),
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
    no_norms = {**good, "styles": {"cartoon": 0}}  # a network without normalisation layers
    assert P.parse_worker_info(P.encode_json(no_norms)) == no_norms
    for change, message in [({"styles": {}}, "1..256 styles"), ({"styles": {"candy": -1}}, "channel count"),
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
    frames = P.result_frames(header, tiles, np.zeros((3, 144)), 10, 20, header.count)
    reply = P.Header.unpack(frames[0])
    assert (reply.kind, reply.request_id, reply.height, reply.width, reply.queue_us, reply.infer_us) == \
        (P.Kind.RESULT, 7, 24, 32, 10, 20)
    error = P.error_frames(P.Kind.ERROR, P.Code.STYLE, "é" * 5000, header)
    assert P.Header.unpack(error[0]).request_id == 7 and len(error[1]) == P.MAX_TEXT_BYTES


def test_json_nested_past_the_parser_is_a_protocol_error():
    with pytest.raises(P.ProtocolError, match="does not parse") as caught:  # was a RecursionError
        P.parse_worker_info(b"[" * 60_000)
    assert caught.value.code == P.Code.MALFORMED


# Fuzzing: valid messages made by the protocol's own encoders, then mutated field by field and byte
# by byte while the header keeps its size and magic, so the checks past the framing get exercised.

TILES = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
CROP, MARGIN = 8, 12
SHM_BYTES = (TILES.nbytes, 2 * (40 - 2 * CROP) * (48 - 2 * CROP) * 3)
"""Input and output bytes of the shared-memory request of :func:`valid_requests`."""


def valid_requests(style: str = "candy", stats_channels: int = 144, host: int = 0,
                   segment: str = "vrs_1a_2b") -> list[list[bytes]]:
    """One message of each request form: STYLIZE with and without statistics, RGBA, MEASURE,
    and STYLIZE with its tiles in shared memory ``segment``."""
    rgba = np.concatenate([TILES, np.full((*TILES.shape[:-1], 1), 255, np.uint8)], axis=-1)
    stats = np.abs(np.random.default_rng(1).normal(size=(2, stats_channels))).astype(np.float32)
    batches = [P.TileBatch(style, TILES, stats, CROP, MARGIN, frame_id=3, first_tile=4),
               P.TileBatch(style, TILES, None, CROP, MARGIN), P.TileBatch(style, rgba, stats, CROP, MARGIN),
               P.TileBatch(style, TILES, None, margin=MARGIN, measure=True)]
    messages = [P.request_frames(batch.header(7 + i, host), batch.tiles, batch.stats, None)
                for i, batch in enumerate(batches)]
    shm = P.ShmDescriptor(segment, 0, SHM_BYTES[0], SHM_BYTES[0], SHM_BYTES[1])
    messages.append(P.request_frames(batches[0].header(11, host, shm=True), None, stats, shm))
    zstd = dataclasses.replace(batches[1].header(12, host), flags=P.FLAG_ZSTD)
    messages.append(P.request_frames(zstd, None, None, None, coded=codec.encode(TILES, "zstd")))
    return [[bytes(part) for part in message] for message in messages]


def valid_replies() -> list[tuple[P.Header, list[bytes]]]:
    """(request, reply) pairs: RESULT of STYLIZE with tiles in the message, compressed and in shared memory,
    RESULT of MEASURE, ERROR, LOST; and READY (its "request" unused)."""
    stylize, _, _, measure, in_shm, zstd = (P.Header.unpack(message[0]) for message in valid_requests())
    tiles = np.zeros(stylize.out_shape, np.uint8)
    moments = np.random.default_rng(2).normal(size=(3, 144))
    info = {"styles": {"candy": 144, "tiny": 16}, "host": 5, "device": "cuda:0", "credit": 2, "pid": 42}
    pairs = [(stylize, P.result_frames(stylize, tiles, moments, 10, 20, 4)),
             (in_shm, P.result_frames(in_shm, None, moments, 10, 20, 4)),
             (zstd, P.result_frames(zstd, np.zeros(zstd.out_shape, np.uint8), moments, 10, 20, 4)),
             (measure, P.result_frames(measure, None, moments, 10, 20, 4)),
             (stylize, P.error_frames(P.Kind.ERROR, P.Code.STYLE, "no such style", stylize)),
             (stylize, P.error_frames(P.Kind.LOST, P.Code.WORKER_DIED, "worker died", stylize)),
             (stylize, [P.Header(P.Kind.READY, host=5).pack(), P.encode_json(info)])]
    return [(request, [bytes(part) for part in frames]) for request, frames in pairs]


def layout(packer: struct.Struct, names: list[str]) -> dict[str, tuple[int, str]]:
    """Field name -> (byte offset, struct code) of a little-endian struct."""
    codes = re.findall(r"\d*[a-zA-Z]", packer.format.lstrip("<"))
    offsets, position = {}, 0
    for name, code in zip(names, codes, strict=True):
        offsets[name] = (position, code)
        position += struct.calcsize(f"<{code}")
    return offsets


HEADER_FIELDS = layout(P.HEADER_STRUCT, ["magic", "version", *(f.name for f in dataclasses.fields(P.Header))])
SHM_FIELDS = layout(P.SHM_STRUCT, [f.name for f in dataclasses.fields(P.ShmDescriptor)])
KIND_OFFSET = HEADER_FIELDS["kind"][0]


def field_values(code: str) -> st.SearchStrategy:
    """Values for one struct field: small, at the top of its range, anywhere; names and text too."""
    size = struct.calcsize(f"<{code}")
    if code.endswith("s"):
        texts = [b"", b"tiny", b"candy", b"vrs_1a_2c", "é".encode(), b"\xff\xfe", b"a\x01", b"../etc", b"x" * size]
        return st.one_of(st.sampled_from(texts), st.binary(max_size=size)).map(lambda text: text.ljust(size, b"\0"))
    top = 2 ** (8 * size) - 1
    return st.one_of(st.integers(0, 16), st.integers(top - 2, top), st.integers(0, top))


def set_field(draw, frames: list[bytes]) -> list[bytes]:
    """One field of the header (not its framing, which :func:`flip_bits` reaches) or, where a part
    is a descriptor, of the descriptor."""
    structs = [(0, HEADER_FIELDS)] + [(i, SHM_FIELDS) for i in range(1, len(frames))
                                      if len(frames[i]) == P.SHM_STRUCT.size]
    index, fields = draw(st.sampled_from(structs))
    name = draw(st.sampled_from([name for name in fields if name not in ("magic", "version")]))
    offset, code = fields[name]
    data = bytearray(frames[index])
    value = draw(field_values(code))
    if code.endswith("s"):
        data[offset:offset + len(value)] = value
    else:
        struct.pack_into(f"<{code}", data, offset, value)
    return [*frames[:index], bytes(data), *frames[index + 1:]]


def flip_bits(draw, frames: list[bytes]) -> list[bytes]:
    """Some bits of one byte anywhere but the magic: text, flags, float exponents, names."""
    index = draw(st.integers(0, len(frames) - 1))
    data = bytearray(frames[index])
    start = len(P.MAGIC) if index == 0 else 0
    if len(data) > start:
        data[draw(st.integers(start, len(data) - 1))] ^= draw(st.integers(1, 255))
    return [*frames[:index], bytes(data), *frames[index + 1:]]


def reshape(draw, frames: list[bytes]) -> list[bytes]:
    """New tile geometry, with the pixel part or the descriptor's sizes made to match, so the
    checks after the size comparison run."""
    count, height, width = draw(st.integers(0, 3)), draw(st.integers(0, 48)), draw(st.integers(0, 48))
    channels, crop, margin = draw(st.sampled_from([0, 1, 3, 4, 255])), draw(st.integers(0, 25)), draw(st.integers(0, 25))
    header = bytearray(frames[0])
    for name, value in [("count", count), ("height", height), ("width", width), ("channels", channels),
                        ("crop", crop), ("margin", margin)]:
        offset, code = HEADER_FIELDS[name]
        struct.pack_into(f"<{code}", header, offset, value)
    frames = [bytes(header), *frames[1:]]
    if len(frames) < 2:
        return frames
    in_bytes = count * height * width * channels
    if len(frames[1]) != P.SHM_STRUCT.size:
        return [frames[0], bytes(in_bytes), *frames[2:]]
    stylize = header[KIND_OFFSET] == P.Kind.STYLIZE
    out_bytes = count * max(height - 2 * crop, 0) * max(width - 2 * crop, 0) * 3 if stylize else 0
    descriptor = bytearray(frames[1])
    for name, value in [("in_bytes", in_bytes), ("out_bytes", out_bytes)]:
        offset, code = SHM_FIELDS[name]
        struct.pack_into(f"<{code}", descriptor, offset, value)
    return [frames[0], bytes(descriptor), *frames[2:]]


def resize_part(draw, frames: list[bytes]) -> list[bytes]:
    """A part after the header cut short or grown."""
    if len(frames) < 2:
        return frames
    index = draw(st.integers(1, len(frames) - 1))
    size = draw(st.integers(0, len(frames[index]) + 64))
    return [*frames[:index], frames[index][:size].ljust(size, b"\0"), *frames[index + 1:]]


def drop_or_repeat_part(draw, frames: list[bytes]) -> list[bytes]:
    """One part fewer or one more (never the header)."""
    if len(frames) > 1 and draw(st.booleans()):
        index = draw(st.integers(1, len(frames) - 1))
        return [*frames[:index], *frames[index + 1:]]
    return [*frames, draw(st.sampled_from(frames))]


MUTATIONS = [set_field, set_field, flip_bits, reshape, resize_part, drop_or_repeat_part]


@st.composite
def mutated(draw, messages: list[list[bytes]]) -> list[bytes]:
    """One of ``messages`` after one to three mutations."""
    frames = draw(st.sampled_from(messages))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        frames = mutation(draw, frames)
    return frames


def refused(exc: P.ProtocolError) -> P.ProtocolError:
    """A refusal as the peer will see it: a known code and a one-line message."""
    assert isinstance(exc.code, P.Code) and str(exc) and "\n" not in str(exc), repr(exc)
    return exc


def check_request(frames: list[bytes]) -> P.ProtocolError | None:
    """The decoder's verdict: a refusal, or a request that passes the decoder's own checks and
    survives encoding again."""
    try:
        request = P.parse_request(frames)
    except P.ProtocolError as exc:
        return refused(exc)
    header = request.header
    P.check_request_header(header)
    payload = int(np.prod(header.in_shape))
    if request.coded is not None:
        sizes, blob = request.coded
        assert int(sizes[1:].sum()) == len(blob) and len(sizes) == header.count + 1 and P.codec_of(header.flags)
    elif request.shm is None:
        assert len(request.pixels) == payload
    else:
        assert request.shm.in_bytes == payload and P.SHM_NAME.fullmatch(request.shm.name)
    if request.stats is not None:
        assert request.stats.shape == (2, header.stats_channels)
        assert np.isfinite(request.stats).all() and (request.stats[1] >= 0).all()
    again = P.request_frames(header, request.pixels, request.stats, request.shm, request.bounds, request.frame,
                             request.coded)
    assert P.parse_request(again).header == header
    return None


def test_mutated_requests_are_refused_with_a_code_or_decode_consistently():
    accepted = []

    @settings(max_examples=800, deadline=None)
    @given(mutated(valid_requests()))
    def run(frames):
        if check_request(frames) is None:
            accepted.append(frames)

    run()
    assert accepted, "no mutation was ever harmless: the strategy mutates too blindly"


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(valid_replies()).flatmap(lambda pair: st.tuples(st.just(pair[0]), mutated([pair[1]]))))
def test_mutated_replies_are_refused_with_a_code_or_decode_consistently(pair):
    request, frames = pair
    try:
        header = P.Header.unpack(frames[0])
        if header.kind == P.Kind.RESULT:
            tiles, moments = P.parse_result(header, frames, request)
            assert moments.shape == (3, header.stats_channels) and moments.dtype == P.MOMENTS_DTYPE
            assert tiles is None or (tiles.shape == request.out_shape and tiles.dtype == np.uint8)
        elif header.kind in (P.Kind.ERROR, P.Kind.LOST) and len(frames) > 1:
            assert len(P.parse_text(frames[1]).encode()) <= 3 * P.MAX_TEXT_BYTES
        elif header.kind == P.Kind.READY and len(frames) == 2:
            info = P.parse_worker_info(frames[1])
            assert P.parse_worker_info(P.encode_json(info)) == info
        assert P.Header.unpack(header.pack()) == header
    except P.ProtocolError as exc:
        refused(exc)
