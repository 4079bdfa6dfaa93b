"""The wire protocol between clients, the broker and style workers.

Every message is a ZeroMQ multipart message ``[header, part...]``. The header is one small
fixed struct (:data:`HEADER_STRUCT`, little-endian) whose every field is validated on receipt;
the parts are raw bytes: pixels (uint8, sent zero-copy), statistics (float32), moments
(float64), a shared-memory descriptor, UTF-8 text or a small JSON object. Nothing is ever
unpickled.

============  ==========================  =============================================
kind          direction                   parts after the header
============  ==========================  =============================================
STYLIZE       client -> broker -> worker  pixels | sizes, encodings (FLAG_JPEG/FLAG_ZSTD) |
                                          shm descriptor, [frame part if FLAG_FRAME],
                                          [stats if FLAG_STATS], [bounds if FLAG_BOUNDS]
MEASURE       client -> broker -> worker  pixels | shm descriptor, [stats], [bounds]
RESULT        worker -> broker -> client  [pixels | sizes, encodings: STYLIZE without FLAG_SHM],
                                          moments
ERROR, LOST   broker/worker -> client     message (UTF-8)
READY         worker -> broker            worker info (JSON: styles, host, device, credit)
HEARTBEAT     both ways                   -
DISCONNECT    worker -> broker            - (leaving cleanly)
RECONNECT     broker -> worker            - ("unknown to me: send READY again")
STATUS        client <-> broker           request: -; reply: broker state (JSON)
CANCEL        client -> broker -> worker  - (client: ``frame_id`` withdrawn; worker: skip
                                          request ``request_id`` unless started)
============  ==========================  =============================================

A request is one batch of ``count`` tiles of one frame (tiles ``first_tile ..``), all
``height x width x channels`` uint8. Workers stylise them with the statistics sent along (or,
without FLAG_STATS, with the joint statistics of the batch), crop ``crop`` px off every side
and measure the moments of the tile cores (``margin`` px in) for the stream's next frame.
With FLAG_BOUNDS, the tiles' bounds (int32, ``(count, 4)``: where the image lies in each
tile, :meth:`tiles.TileGrid.bounds`) make tiles at the image's border reflect there at every
layer, as the whole image does. A MEASURE request with statistics and ``measure_to = c + 1``
normalises with them and measures each tile's moments up to the layer that holds statistics
column ``c`` (the layer-by-layer passes of exact statistics); columns beyond come back with
count 0. A RESULT gives the time of the forward pass that computed it (``infer_us``) and the
tiles that pass computed (``pass_tiles``): requests a worker batched together share one pass.
With FLAG_FRAME (same host only) the shared memory is a slot of the client's frame ring: the
whole frame once, stamped with its frame id, and room for all its tiles' results; each request
names its tiles by index and the worker cuts them itself, so a frame is copied once and its
requests carry a few bytes each. With FLAG_JPEG or FLAG_ZSTD (links to other hosts) the pixels,
both ways, are compressed tile by tile (:mod:`vrstyle.transport.codec`).
Latest frame wins: a client that no longer wants a frame sends CANCEL; the broker answers its
queued requests of that frame LOST (``Code.CANCELLED``) at once and passes a CANCEL per request
to the workers holding the rest, which answer LOST (cancelled) for those they have not started.
Deadlines travel as a remaining budget in microseconds (``budget_us``, 0 = none), so no two
hosts need synchronised clocks.

Length: over 400 lines on purpose, so the whole wire format (constants, the header, each
message's encoder and its validation) reads as one specification, as zguide's protocols do.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from dataclasses import astuple, dataclass, fields, replace
from typing import Any, Sequence

import numpy as np

from tiles import TileGrid, bounds_outside

MAGIC = b"VRST"
VERSION = 3


class Kind(enum.IntEnum):
    """Message kinds, the header's ``kind`` byte (see the table above)."""

    READY = 1
    HEARTBEAT = 2
    DISCONNECT = 3
    RECONNECT = 4
    STYLIZE = 5
    MEASURE = 6
    RESULT = 7
    ERROR = 8
    LOST = 9
    STATUS = 10
    CANCEL = 11


class Code(enum.IntEnum):
    """The header's ``code``: why an ERROR reply refused a request (1..19) or why a LOST reply
    gave it up (20..). :attr:`label` is the name counters and :attr:`Reply.reason` use."""

    MALFORMED = 1
    VERSION = 2
    KIND = 3
    LIMIT = 4
    PAYLOAD = 5
    DTYPE = 6
    STYLE = 7
    STATS = 8
    BUSY = 9
    NO_LOCAL_WORKER = 10
    SHM = 11
    WORKER = 12
    EXPIRED = 20
    WORKER_DIED = 21
    BROKER_GONE = 22
    CANCELLED = 23

    @property
    def label(self) -> str:
        """``no-local-worker`` for NO_LOCAL_WORKER."""
        return self.name.lower().replace("_", "-")


class Status(str, enum.Enum):
    """What became of a request (:attr:`Reply.status`); equal to its spelling, ``"ok"`` etc."""

    OK = "ok"
    ERROR = "error"
    LOST = "lost"

    __str__ = str.__str__  # "ok" in messages and f-strings on every Python, not "Status.OK"
    __format__ = str.__format__


REQUESTS = (Kind.STYLIZE, Kind.MEASURE)

# Header flags.
FLAG_SHM = 1
"""Pixels are in a shared-memory segment named by a descriptor part (same host only)."""
FLAG_STATS = 2
"""A statistics part follows; without it the worker measures the batch jointly."""
FLAG_REDISPATCHED = 4
"""The request went to a second worker after the first died (its shm slot may still be written)."""
FLAG_BOUNDS = 8
"""A bounds part follows: where the image lies in each tile."""
FLAG_FRAME = 16
"""With FLAG_SHM: the segment's input is a whole frame (a ring slot, stamped with its frame id),
not tiles; a frame part (:class:`FrameSpec`) says how it is tiled, and the worker cuts tiles
``first_tile ..`` from it and writes their results into the slot's output, at their indices."""
FLAG_JPEG = 32
"""The pixels (and the result's) are compressed tile by tile (:mod:`vrstyle.transport.codec`): two
parts, int32 ``[quality, size_0, ...]`` and the encodings; JPEG tiles are RGB."""
FLAG_ZSTD = 64
"""As FLAG_JPEG, losslessly with zstd."""
CODEC_FLAGS = {"jpeg": FLAG_JPEG, "zstd": FLAG_ZSTD}
FLAG_BOTTOM_UP = 128
"""With FLAG_FRAME: the slot holds the frame's rows bottom-up, as GL reads them back (a headset
reads its eye textures straight into the slot); the worker cuts from the rows reversed."""
ALL_FLAGS = (FLAG_SHM | FLAG_STATS | FLAG_REDISPATCHED | FLAG_BOUNDS | FLAG_FRAME | FLAG_JPEG | FLAG_ZSTD
             | FLAG_BOTTOM_UP)

# Data types.
DTYPE_UINT8 = 1
PIXEL_DTYPES = {DTYPE_UINT8: np.uint8}
STATS_DTYPE = np.dtype("<f4")
"""Statistics are float32: variances overflow float16."""
MOMENTS_DTYPE = np.dtype("<f8")
"""Moments are float64, so merging a frame's batches adds no rounding of its own."""
BOUNDS_DTYPE = np.dtype("<i4")
SIZES_DTYPE = np.dtype("<i4")
"""Compressed tiles' part: quality, then each tile's byte size."""

# Liveness (zguide "Paranoid Pirate"): both sides send a heartbeat every interval and count a
# peer dead after LIVENESS silent intervals.
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_LIVENESS = 3
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 8.0
"""A worker that lost its broker reconnects after these delays, doubling each time."""

# Size limits, checked before anything is allocated for a message's contents.
MAX_TILES_PER_REQUEST = 256
MAX_TILE_SIDE = 4096
MAX_PAYLOAD_BYTES = 256 << 20
MAX_STATS_CHANNELS = 1 << 16
MAX_EYES = 16
MAX_FRAME_SIDE = 16384
MAX_BOUND = 1 << 24
"""Tile bounds are within this many pixels of the tile (images are far smaller)."""
MAX_STYLE_BYTES = 128
MAX_TEXT_BYTES = 4096
MAX_JSON_BYTES = 64 << 10
MAX_SOCKET_MESSAGE_BYTES = 2 * MAX_PAYLOAD_BYTES
"""Hard cap set on sockets (ZMQ_MAXMSGSIZE): a peer sending more is disconnected by libzmq.
Anything between the limits above and this gets an error reply."""

HEADER_STRUCT = struct.Struct(f"<4sBBHQQQIIHHHBBHHIHIIII{MAX_STYLE_BYTES}s")
SHM_STRUCT = struct.Struct("<32sQQQQ")
FRAME_STRUCT = struct.Struct("<9I")
"""Frame part: eyes, then the tile grid (height, width, core_h, core_w, rows, cols, halo, overlap)."""
STAMP_BYTES = 64
"""A ring slot's input starts with the id of the frame in it (little-endian int64, a cache line
to itself), then the frame's pixels; a worker reads the stamp before cutting and after writing."""
"""Shared-memory descriptor: segment name, input offset and bytes, output offset and bytes."""
SHM_NAME = re.compile(r"vrs_[0-9a-z_]{1,27}")
"""Segment names a worker will open: its own namespace only."""
STYLE_NAME = re.compile(r"[^\x00-\x1f\x7f]+")


class ProtocolError(ValueError):
    """A message that breaks the protocol: answered with an ERROR reply carrying ``code``."""

    def __init__(self, code: Code, message: str, request_id: int = 0):
        super().__init__(message)
        self.code, self.request_id = code, request_id


@dataclass(frozen=True)
class Header:
    """The fixed header of every message (unused fields are 0)."""

    kind: Kind
    flags: int = 0
    request_id: int = 0
    frame_id: int = 0
    host: int = 0
    budget_us: int = 0
    first_tile: int = 0
    count: int = 0
    height: int = 0
    width: int = 0
    channels: int = 0
    dtype: int = 0
    crop: int = 0
    margin: int = 0
    stats_channels: int = 0
    code: int = 0
    queue_us: int = 0
    infer_us: int = 0
    measure_to: int = 0
    pass_tiles: int = 0
    style: str = ""

    def pack(self) -> bytes:
        style = self.style.encode()
        if len(style) > MAX_STYLE_BYTES:
            raise ProtocolError(Code.LIMIT, f"style name longer than {MAX_STYLE_BYTES} bytes: {self.style[:40]!r}...")
        values = [getattr(self, f.name) for f in fields(self)][:-1]
        return HEADER_STRUCT.pack(MAGIC, VERSION, *values, style)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> "Header":
        """Parse and check the header's framing (magic, version, kind, flags, style text).

        Raises:
            ProtocolError: anything that is not a header this version can read.
        """
        if len(data) != HEADER_STRUCT.size:
            raise ProtocolError(Code.MALFORMED, f"header has {len(data)} bytes, expected {HEADER_STRUCT.size}")
        magic, version, *values, style = HEADER_STRUCT.unpack(data)
        if magic != MAGIC:
            raise ProtocolError(Code.MALFORMED, f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
        kind, flags, request_id = values[:3]
        if version != VERSION:
            raise ProtocolError(Code.VERSION, f"protocol version {version} is not supported (this is {VERSION})",
                                request_id)
        try:
            kind = Kind(kind)
        except ValueError:
            raise ProtocolError(Code.KIND, f"unknown message kind {kind}", request_id) from None
        if flags & ~ALL_FLAGS:
            raise ProtocolError(Code.MALFORMED, f"unknown flags {flags:#x}", request_id)
        try:
            text = style.rstrip(b"\0").decode()
        except UnicodeDecodeError:
            raise ProtocolError(Code.MALFORMED, "style name is not UTF-8", request_id) from None
        if text and not STYLE_NAME.fullmatch(text):
            raise ProtocolError(Code.MALFORMED, f"style name {text!r} has control characters", request_id)
        return cls(kind, *values[1:], style=text)

    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        return self.count, self.height, self.width, self.channels

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """Shape of a STYLIZE request's returned tiles: cropped, RGB."""
        return self.count, self.height - 2 * self.crop, self.width - 2 * self.crop, 3


@dataclass(frozen=True)
class ShmDescriptor:
    """Where a request's pixels are in shared memory, and where its result goes."""

    name: str
    in_offset: int
    in_bytes: int
    out_offset: int
    out_bytes: int

    def pack(self) -> bytes:
        return SHM_STRUCT.pack(self.name.encode(), self.in_offset, self.in_bytes, self.out_offset, self.out_bytes)

    @classmethod
    def unpack(cls, data: bytes | memoryview, request_id: int = 0) -> "ShmDescriptor":
        if len(data) != SHM_STRUCT.size:
            raise ProtocolError(Code.MALFORMED, f"shm descriptor has {len(data)} bytes, expected {SHM_STRUCT.size}",
                                request_id)
        raw, *numbers = SHM_STRUCT.unpack(data)
        name = raw.rstrip(b"\0").decode("ascii", "replace")
        if not SHM_NAME.fullmatch(name):
            raise ProtocolError(Code.SHM, f"shm segment name {name!r} is not a vrstyle segment", request_id)
        return cls(name, *numbers)


@dataclass(frozen=True)
class FrameSpec:
    """How the frame in a ring slot is tiled (the FLAG_FRAME part)."""

    eyes: int
    grid: TileGrid

    def pack(self) -> bytes:
        return FRAME_STRUCT.pack(self.eyes, *astuple(self.grid))

    @classmethod
    def unpack(cls, data: bytes | memoryview, request_id: int = 0) -> "FrameSpec":
        """Parse and check that the grid tiles a frame of sane size as :func:`tiles.plan_grid` would."""
        if len(data) != FRAME_STRUCT.size:
            raise ProtocolError(Code.MALFORMED, f"frame part has {len(data)} bytes, expected {FRAME_STRUCT.size}",
                                request_id)
        eyes, height, width, core_h, core_w, rows, cols, halo, overlap = FRAME_STRUCT.unpack(data)
        grid = TileGrid(height, width, core_h, core_w, rows, cols, halo, overlap)
        problem = None
        if not 1 <= eyes <= MAX_EYES:
            problem = f"{eyes} eyes (1..{MAX_EYES} allowed)"
        elif not (1 <= height <= MAX_FRAME_SIDE and 1 <= width <= MAX_FRAME_SIDE):
            problem = f"a {height}x{width} frame (sides 1..{MAX_FRAME_SIDE} allowed)"
        elif not (core_h and core_w and rows == -(-height // core_h) and cols == -(-width // core_w)):
            problem = f"{rows}x{cols} cores of {core_h}x{core_w} px do not tile a {height}x{width} frame"
        elif grid.margin >= min(height, width) or 2 * overlap > min(core_h, core_w):
            problem = (f"halo {halo} and overlap {overlap} px do not fit {core_h}x{core_w} cores of a "
                       f"{height}x{width} frame")
        if problem:
            raise ProtocolError(Code.PAYLOAD, f"frame part: {problem}", request_id)
        return cls(eyes, grid)

    def frame_shape(self, channels: int) -> tuple[int, int, int, int]:
        return self.eyes, self.grid.height, self.grid.width, channels

    def in_bytes(self, channels: int) -> int:
        """Bytes of a slot's input: the stamp, then the frame."""
        return STAMP_BYTES + int(np.prod(self.frame_shape(channels)))

    def out_shape(self) -> tuple[int, int, int, int]:
        """The slot's output: every tile of the frame, cropped, RGB, in tile order."""
        return (self.eyes * len(self.grid), *self.grid.out_shape, 3)


@dataclass
class TileBatch:
    """A batch of tiles of one frame to stylise (or measure): what a client submits.

    Args:
        style: model name the workers know it by.
        tiles: (count, height, width, 3 or 4) uint8, tile ``first_tile`` first.
        stats: (2, C) statistics to normalise with; None measures the batch jointly.
        bounds: (count, 4) where the image lies in each tile (:meth:`tiles.TileGrid.bounds`);
            None: each tile's edges are the image's.
        crop: pixels cut off every side of the result (the halo).
        margin: pixels outside each tile's core (overlap + halo), left out of the moments.
        measure: only measure moments: the batch's joint ones, or with ``stats`` each tile's,
            up to the layer holding column ``measure_to - 1`` (0: all layers).
        frame_id, first_tile: identify the tiles to the caller; echoed in the reply.
        deadline_s: seconds from submission after which the result is worthless (None: no deadline).
        out: optional (count, height - 2 crop, width - 2 crop, 3) uint8 array the result is
            written into (saves a copy).
    """

    style: str
    tiles: np.ndarray
    stats: np.ndarray | None = None
    crop: int = 0
    margin: int = 0
    measure: bool = False
    frame_id: int = 0
    first_tile: int = 0
    deadline_s: float | None = None
    out: np.ndarray | None = None
    bounds: np.ndarray | None = None
    measure_to: int = 0

    def header(self, request_id: int, host: int = 0, shm: bool = False) -> Header:
        """The request header for this batch (the budget is set when it is sent)."""
        count, height, width, channels = self.tiles.shape
        flags = ((FLAG_SHM if shm else 0) | (FLAG_STATS if self.stats is not None else 0)
                 | (FLAG_BOUNDS if self.bounds is not None else 0))
        return Header(Kind.MEASURE if self.measure else Kind.STYLIZE, flags, request_id, self.frame_id, host, 0,
                      self.first_tile, count, height, width, channels, DTYPE_UINT8, self.crop, self.margin,
                      0 if self.stats is None else self.stats.shape[-1], measure_to=self.measure_to, style=self.style)


@dataclass
class FrameBatch:
    """Tiles ``first_tile .. first_tile + count - 1`` of the frame in a ring slot: a request on
    the same-host fast path, carrying no pixels (the worker cuts them from the slot)."""

    style: str
    spec: FrameSpec
    channels: int
    first_tile: int
    count: int
    frame_id: int
    stats: np.ndarray | None = None
    deadline_s: float | None = None
    bottom_up: bool = False
    """The slot holds the frame's rows bottom-up (FLAG_BOTTOM_UP)."""

    def header(self, request_id: int, host: int = 0) -> Header:
        grid = self.spec.grid
        flags = (FLAG_SHM | FLAG_FRAME | (FLAG_STATS if self.stats is not None else 0)
                 | (FLAG_BOTTOM_UP if self.bottom_up else 0))
        return Header(Kind.STYLIZE, flags, request_id, self.frame_id, host, 0, self.first_tile, self.count,
                      *grid.in_shape, self.channels, DTYPE_UINT8, grid.halo, grid.margin,
                      0 if self.stats is None else self.stats.shape[-1], style=self.style)


@dataclass
class Reply:
    """What came back for one submitted batch.

    ``status`` is "ok" (``tiles`` for STYLIZE, ``moments`` always), "error" (the request was
    refused or failed: ``code`` and ``message`` say why) or "lost" (no worker could finish
    it in time, or the broker went away). Times are seconds: ``queue_s`` waiting in the broker
    and worker, ``infer_s`` the worker's forward pass, ``round_trip_s`` submission to receipt;
    ``pass_share`` the request's share of that pass (its tiles over the pass's: requests a worker
    batched together share one pass, so their times must not be added up whole).
    """

    request_id: int
    status: Status
    frame_id: int = 0
    first_tile: int = 0
    count: int = 0
    tiles: np.ndarray | None = None
    moments: np.ndarray | None = None
    code: int = 0
    message: str = ""
    queue_s: float = 0.0
    infer_s: float = 0.0
    round_trip_s: float = 0.0
    redispatched: bool = False
    pass_share: float = 1.0

    @property
    def reason(self) -> str:
        """The code's label ("worker-died"), or its number where this version does not know it."""
        try:
            return Code(self.code).label
        except ValueError:
            return str(self.code)


@dataclass
class Request:
    """A validated STYLIZE or MEASURE request as a worker or the broker sees it."""

    header: Header
    pixels: memoryview | None
    shm: ShmDescriptor | None
    stats: np.ndarray | None
    bounds: np.ndarray | None = None
    frame: FrameSpec | None = None
    coded: tuple[np.ndarray, memoryview] | None = None
    """Compressed pixels: (``[quality, size_0, ...]``, the encodings)."""


def codec_of(flags: int) -> str | None:
    """The codec a message's flags name, or None."""
    return next((name for name, flag in CODEC_FLAGS.items() if flags & flag), None)


def parse_request(frames: Sequence) -> Request:
    """Validate a STYLIZE/MEASURE message (header plus parts) without copying its pixels.

    Args:
        frames: the message parts (bytes, memoryviews or zmq Frames).

    Returns:
        The request, with ``pixels`` a view of the received payload.

    Raises:
        ProtocolError: any field out of range, missing or extra parts, sizes that disagree.
    """
    if not frames:
        raise ProtocolError(Code.MALFORMED, "empty message")
    header = Header.unpack(_buffer(frames[0]))
    rid = header.request_id
    if header.kind not in REQUESTS:
        raise ProtocolError(Code.KIND, f"expected a STYLIZE or MEASURE request, got {header.kind.name}", rid)
    check_request_header(header)
    codec = codec_of(header.flags)
    expected_parts = 2 + bool(header.flags & FLAG_STATS) + bool(header.flags & FLAG_BOUNDS) \
        + bool(header.flags & FLAG_FRAME) + (codec is not None)
    if len(frames) != expected_parts:
        raise ProtocolError(Code.MALFORMED, f"{header.kind.name} request has {len(frames)} parts, expected "
                                            f"{expected_parts}", rid)
    payload = int(np.prod(header.in_shape))
    shm = pixels = frame = coded = None
    if codec is not None:
        coded = _coded_parts(frames[1], frames[2], header.count, rid)
    elif header.flags & FLAG_FRAME:
        shm = ShmDescriptor.unpack(_buffer(frames[1]), rid)
        frame = FrameSpec.unpack(_buffer(frames[2]), rid)
        _check_frame_request(header, shm, frame)
    elif header.flags & FLAG_SHM:
        shm = ShmDescriptor.unpack(_buffer(frames[1]), rid)
        out_bytes = int(np.prod(header.out_shape)) if header.kind == Kind.STYLIZE else 0
        if shm.in_bytes != payload or shm.out_bytes != out_bytes:
            raise ProtocolError(Code.PAYLOAD, f"shm descriptor sizes {shm.in_bytes}/{shm.out_bytes} do not match "
                                              f"tiles {header.in_shape} ({payload}/{out_bytes} bytes)", rid)
    else:
        pixels = _buffer(frames[1])
        if len(pixels) != payload:
            raise ProtocolError(Code.PAYLOAD, f"pixel payload has {len(pixels)} bytes, but {header.count} tiles of "
                                              f"{header.height}x{header.width}x{header.channels} uint8 need {payload}",
                                rid)
    stats = bounds = None
    if header.flags & FLAG_STATS:
        stats = parse_array(frames[-1 - bool(header.flags & FLAG_BOUNDS)], STATS_DTYPE, (2, header.stats_channels),
                            "statistics", rid)
        if not np.isfinite(stats).all() or (stats[1] < 0).any():
            raise ProtocolError(Code.STATS, "statistics must be finite with non-negative variances", rid)
    if header.flags & FLAG_BOUNDS:
        bounds = parse_array(frames[-1], BOUNDS_DTYPE, (header.count, 4), "bounds", rid)
        check_bounds(bounds, header.height, header.width, rid)
    return Request(header, pixels, shm, stats, bounds, frame, coded)


def _coded_parts(sizes_part, blob_part, count: int, request_id: int) -> tuple[np.ndarray, memoryview]:
    """The two parts of compressed tiles, their sizes checked against the encodings."""
    sizes = parse_array(sizes_part, SIZES_DTYPE, (count + 1,), "tile sizes", request_id)
    blob = _buffer(blob_part)
    if not 1 <= sizes[0] <= 100 or (sizes[1:] < 1).any() or int(sizes[1:].astype(np.int64).sum()) != len(blob):
        raise ProtocolError(Code.PAYLOAD, f"compressed tiles: quality {sizes[0]} and sizes {sizes[1:5].tolist()}... "
                                          f"do not describe the {len(blob)}-byte payload", request_id)
    return sizes, blob


def _check_frame_request(header: Header, shm: ShmDescriptor, frame: FrameSpec) -> None:
    """A frame request's tiles must be the grid's, inside the frame, and the slot sized for it."""
    rid, grid = header.request_id, frame.grid
    if (header.height, header.width) != grid.in_shape or header.crop != grid.halo or header.margin != grid.margin:
        raise ProtocolError(Code.PAYLOAD, f"tiles of {header.height}x{header.width} px, crop {header.crop}, margin "
                                          f"{header.margin} are not the frame grid's ({grid.in_shape[0]}x"
                                          f"{grid.in_shape[1]}, {grid.halo}, {grid.margin})", rid)
    total = frame.eyes * len(grid)
    if header.first_tile + header.count > total:
        raise ProtocolError(Code.PAYLOAD, f"tiles {header.first_tile}..{header.first_tile + header.count - 1} "
                                          f"outside the frame's {total}", rid)
    out_bytes = int(np.prod(frame.out_shape())) if header.kind == Kind.STYLIZE else 0
    if shm.in_bytes != frame.in_bytes(header.channels) or shm.out_bytes != out_bytes:
        raise ProtocolError(Code.PAYLOAD, f"ring slot sizes {shm.in_bytes}/{shm.out_bytes} do not match a "
                                          f"{'x'.join(map(str, frame.frame_shape(header.channels)))} frame "
                                          f"({frame.in_bytes(header.channels)}/{out_bytes} bytes)", rid)


def check_bounds(bounds: np.ndarray, height: int, width: int, request_id: int = 0) -> None:
    """Each tile's bounds must leave some of the image inside the tile, within :data:`MAX_BOUND`."""
    huge = np.abs(bounds) > MAX_BOUND
    bad = bounds[huge.any(1)][0] if huge.any() else bounds_outside(bounds, height, width)
    if bad is not None:
        raise ProtocolError(Code.PAYLOAD, f"tile bounds {bad.tolist()} leave no image in a {height}x{width} tile",
                            request_id)


def check_request_header(header: Header) -> None:
    """Range checks on a request header's geometry (no parts needed)."""
    rid = header.request_id
    if header.flags & FLAG_REDISPATCHED:
        raise ProtocolError(Code.MALFORMED, "requests may not carry the REDISPATCHED flag", rid)
    codecs = [name for name, flag in CODEC_FLAGS.items() if header.flags & flag]
    if len(codecs) > 1 or (codecs and header.flags & FLAG_SHM):
        raise ProtocolError(Code.MALFORMED, "a request names one codec at most, and none with shared memory", rid)
    if codecs == ["jpeg"] and header.channels != 3:
        raise ProtocolError(Code.PAYLOAD, "JPEG tiles are RGB (3 channels)", rid)
    if header.flags & FLAG_FRAME and (not header.flags & FLAG_SHM or header.flags & FLAG_BOUNDS):
        raise ProtocolError(Code.MALFORMED, "a frame request needs FLAG_SHM and carries no bounds (its grid gives "
                                            "them)", rid)
    if header.flags & FLAG_BOTTOM_UP and not header.flags & FLAG_FRAME:
        raise ProtocolError(Code.MALFORMED, "FLAG_BOTTOM_UP is for frame requests only", rid)
    if not header.style:
        raise ProtocolError(Code.STYLE, "request names no style", rid)
    if not 1 <= header.count <= MAX_TILES_PER_REQUEST:
        raise ProtocolError(Code.LIMIT, f"{header.count} tiles in one request (1..{MAX_TILES_PER_REQUEST} allowed)",
                            rid)
    if not (1 <= header.height <= MAX_TILE_SIDE and 1 <= header.width <= MAX_TILE_SIDE):
        raise ProtocolError(Code.LIMIT, f"tile of {header.height}x{header.width} px (sides 1..{MAX_TILE_SIDE} allowed)",
                            rid)
    if header.dtype not in PIXEL_DTYPES:
        raise ProtocolError(Code.DTYPE, f"pixel dtype code {header.dtype} (only uint8 = {DTYPE_UINT8} is supported)",
                            rid)
    if header.channels not in (3, 4):
        raise ProtocolError(Code.PAYLOAD, f"tiles with {header.channels} channels (RGB or RGBA expected)", rid)
    payload = int(np.prod(header.in_shape))
    if payload > MAX_PAYLOAD_BYTES:
        raise ProtocolError(Code.LIMIT, f"request of {payload} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit", rid)
    if 2 * header.crop >= min(header.height, header.width) or 2 * header.margin >= min(header.height, header.width):
        raise ProtocolError(Code.PAYLOAD, f"crop {header.crop} / margin {header.margin} px leave nothing of a "
                                          f"{header.height}x{header.width} tile", rid)
    if header.measure_to and not (header.kind == Kind.MEASURE and header.flags & FLAG_STATS
                                  and header.measure_to <= header.stats_channels):
        raise ProtocolError(Code.MALFORMED, f"measure_to {header.measure_to} needs a MEASURE request with "
                                            f"statistics of at least that many channels", rid)
    if header.flags & FLAG_STATS:
        if not 1 <= header.stats_channels <= MAX_STATS_CHANNELS:
            raise ProtocolError(Code.LIMIT, f"{header.stats_channels} statistics channels "
                                            f"(1..{MAX_STATS_CHANNELS} allowed)", rid)


def parse_array(frame, dtype: np.dtype, shape: tuple[int, ...], what: str, request_id: int = 0) -> np.ndarray:
    """A read-only array view of a message part, checked to hold exactly ``shape`` of ``dtype``."""
    data = _buffer(frame)
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(Code.STATS if what == "statistics" else Code.PAYLOAD,
                            f"{what} part has {len(data)} bytes, expected {expected} for {shape} {dtype.name}",
                            request_id)
    return np.frombuffer(data, dtype).reshape(shape)


def parse_result(header: Header, frames: Sequence, request: Header) -> tuple[np.ndarray | None, np.ndarray]:
    """Validate the parts of RESULT ``header`` against the ``request`` it answers, without copying.

    Returns:
        The tiles, (count, height - 2 crop, width - 2 crop, 3) uint8 (None for MEASURE, and where
        the worker wrote them into the request's shared memory), and the (3, C) moments.

    Raises:
        ProtocolError: missing or extra parts, sizes that disagree with the request.
    """
    rid = header.request_id
    with_tiles = request.kind == Kind.STYLIZE and not header.flags & request.flags & FLAG_SHM
    codec = codec_of(header.flags & request.flags) if with_tiles else None
    expected = 2 + with_tiles + (codec is not None)
    if len(frames) != expected:
        raise ProtocolError(Code.MALFORMED, f"{len(frames)} parts, expected {expected}", rid)
    moments = parse_array(frames[-1], MOMENTS_DTYPE, (3, header.stats_channels), "moments", rid)
    if codec is not None:
        from vrstyle.transport import codec as codecs

        sizes, blob = _coded_parts(frames[1], frames[2], request.count, rid)
        try:
            return codecs.decode(sizes, blob, codec, request.out_shape), moments
        except codecs.CodecError as exc:
            raise ProtocolError(Code.PAYLOAD, f"result tiles: {exc}", rid) from None
    tiles = parse_array(frames[1], np.dtype(np.uint8), request.out_shape, "tiles", rid) if with_tiles else None
    return tiles, moments


def request_frames(header: Header, pixels, stats: np.ndarray | None, shm: ShmDescriptor | None,
                   bounds: np.ndarray | None = None, frame: FrameSpec | None = None,
                   coded: tuple[np.ndarray, bytes] | None = None) -> list:
    """Parts of a request: header, pixels (any buffer), compressed pixels (two parts) or shm
    descriptor, frame part, statistics, bounds."""
    if coded is not None:
        frames = [header.pack(), np.ascontiguousarray(coded[0], SIZES_DTYPE), coded[1]]
    else:
        frames = [header.pack(), shm.pack() if shm is not None else pixels]
    if frame is not None:
        frames.append(frame.pack())
    if stats is not None:
        frames.append(np.ascontiguousarray(stats, STATS_DTYPE))
    if bounds is not None:
        frames.append(np.ascontiguousarray(bounds, BOUNDS_DTYPE))
    return frames


def result_frames(request: Header, tiles: np.ndarray | None, moments: np.ndarray, queue_us: int,
                  infer_us: int, pass_tiles: int, quality: int = 90) -> list:
    """Parts of a RESULT reply to ``request``: cropped RGB tiles (unless written to shm; compressed
    as the request was, JPEG at ``quality``) and moments."""
    count, out_h, out_w, _ = request.out_shape if request.kind == Kind.STYLIZE else (request.count, 0, 0, 3)
    codec = codec_of(request.flags) if tiles is not None else None
    flags = request.flags & FLAG_SHM | (CODEC_FLAGS[codec] if codec else 0)
    header = replace(request, kind=Kind.RESULT, flags=flags, height=out_h, width=out_w, channels=3,
                     stats_channels=moments.shape[-1], queue_us=_clamp_u32(queue_us), infer_us=_clamp_u32(infer_us),
                     pass_tiles=_clamp_u32(pass_tiles))
    frames = [header.pack()]
    if codec is not None:
        from vrstyle.transport import codec as codecs

        frames.extend(codecs.encode(tiles, codec, int(quality)))
    elif tiles is not None:
        frames.append(tiles)
    frames.append(np.ascontiguousarray(moments, MOMENTS_DTYPE))
    return frames


def error_frames(kind: int, code: int, message: str, request: Header | None = None) -> list:
    """Parts of an ERROR or LOST reply (echoing the request's ids when it could be read)."""
    base = request if request is not None else Header(kind)
    header = replace(base, kind=kind, code=code, flags=0)
    text = message.encode()[:MAX_TEXT_BYTES]
    return [header.pack(), text]


def parse_text(frame) -> str:
    data = bytes(_buffer(frame)[:MAX_TEXT_BYTES])
    return data.decode("utf-8", "replace")


def encode_json(value: Any) -> bytes:
    data = json.dumps(value, separators=(",", ":")).encode()
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError(Code.LIMIT, f"JSON part of {len(data)} bytes exceeds {MAX_JSON_BYTES}")
    return data


def decode_json(frame) -> Any:
    """Parse a JSON part (never pickle); oversize or invalid text is a ProtocolError."""
    data = _buffer(frame)
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError(Code.LIMIT, f"JSON part of {len(data)} bytes exceeds {MAX_JSON_BYTES}")
    try:
        return json.loads(bytes(data))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise ProtocolError(Code.MALFORMED, f"JSON part does not parse: {exc}") from None


def parse_worker_info(frame) -> dict[str, Any]:
    """The READY part: ``{"styles": {name: stats_channels}, "host": int, "device": str,
    "credit": int, "pid": int}``, every field checked."""
    info = decode_json(frame)
    if not isinstance(info, dict):
        raise ProtocolError(Code.MALFORMED, "worker info is not a JSON object")
    styles = info.get("styles")
    if not isinstance(styles, dict) or not 1 <= len(styles) <= 256:
        raise ProtocolError(Code.MALFORMED, "worker info needs 1..256 styles")
    for name, channels in styles.items():
        if not (STYLE_NAME.fullmatch(name) and len(name.encode()) <= MAX_STYLE_BYTES):
            raise ProtocolError(Code.STYLE, f"bad style name {name[:40]!r} in worker info")
        if not (isinstance(channels, int) and 0 <= channels <= MAX_STATS_CHANNELS):  # 0: no normalisation layers
            raise ProtocolError(Code.STATS, f"style {name!r}: bad statistics channel count {channels!r}")
    for key, kind, low, high in (("host", int, 0, 2**64 - 1), ("credit", int, 1, 1024), ("pid", int, 0, 2**31)):
        value = info.get(key)
        if not (isinstance(value, kind) and low <= value <= high):
            raise ProtocolError(Code.MALFORMED, f"worker info field {key!r} = {value!r} out of range")
    if not isinstance(info.get("device"), str) or len(info["device"]) > 64:
        raise ProtocolError(Code.MALFORMED, "worker info field 'device' must be a short string")
    return info


def _buffer(frame) -> memoryview:
    """The bytes of a part without copying: zmq Frame, bytes or any buffer."""
    buffer = getattr(frame, "buffer", frame)
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _clamp_u32(value: int) -> int:
    return max(0, min(int(value), 2**32 - 1))
