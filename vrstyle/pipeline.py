"""Frame streams through the style workers: eye buffers -> tiles -> backend -> stylised eyes.

The mirror window, the headset and the benchmark stream frames through a
:class:`FramePipeline`: several frames in flight, a deadline per frame with fallback tiles,
never a black tile, and the requests of a frame dropped or past its deadline cancelled
(latest frame wins). Tiles go to a backend (:mod:`vrstyle.backend`); single images take
:mod:`vrstyle.stylize` instead.

Normalisation statistics of a stream live here. Each batch of tiles carries the stream's
current statistics; the workers stylise with them and, in the same pass, measure the moments
of every layer over the tile cores. The pipeline merges a frame's moments, smooths them into
the statistics for the next frame, and so normalises each frame with the exact
full-resolution statistics of the frames before it: no extra pass, no extra round trip.
The first frame of a stream has none yet: each batch is normalised with its own joint
statistics (batches may then differ slightly, for that one frame).

This module imports no torch (the headset client uses it); engines are passed in built.

Length: about 670 lines: :class:`FramePipeline` is one state machine (frames in flight,
deadlines, fallback tiles, statistics, foveation scales, skipped tiles, frame-ring slots), and
its result types belong beside it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import astuple, dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np

import tiles
from tiles import GridError, TileGrid
from vrstyle import settings
from vrstyle.backend import Backend, as_backend
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments, moments_to_stats, smooth_stats
from vrstyle.resources import Resource
from vrstyle.transport.protocol import Code, FrameBatch, FrameSpec, Reply, Status, TileBatch

if TYPE_CHECKING:
    from vrstyle.models.engine import StyleEngine
    from vrstyle.transport.shm import FrameRing

log = logging.getLogger(__name__)


FallbackReason = Literal["late", "lost", "error"]
"""Why a tile is not fresh: past the deadline, or the reply's status (:class:`Status`) when it failed."""
FallbackSource = Literal["previous", "raw"]


@dataclass(frozen=True)
class Fallback:
    """Why a tile of a frame is not freshly stylised, and what stands in for it.

    ``reason``: "late" (not back by the deadline), "lost" (its worker died and no other could
    finish in time, or the broker went away) or "error" (refused or failed; see ``message``).
    ``source``: "previous" (the tile's last stylised version) or "raw" (the input, cropped to
    core + overlap, when there is no stylised version yet). Never black.
    """

    reason: FallbackReason
    source: FallbackSource
    message: str = ""


@dataclass
class RequestStages:
    """Seconds of one request (or a mean over a frame's): where its round trip went."""

    queue: float = 0.0
    """Waiting in the broker's and the worker's queues."""
    inference: float = 0.0
    """The forward pass in the worker."""
    transfer: float = 0.0
    """The rest of the round trip: moving the tiles there and back."""

    @classmethod
    def of(cls, reply: Reply) -> "RequestStages":
        return cls(reply.queue_s, reply.infer_s, max(reply.round_trip_s - reply.queue_s - reply.infer_s, 0.0))


@dataclass
class Timings:
    """Seconds per stage of one frame, from :meth:`FramePipeline.submit` to its result.

    ``split``, ``send``, then the stages of the frame's last request to come back (``last``,
    its critical path) and ``collect`` (from that reply's arrival to the result) add up to
    ``total``, less the part of ``send`` after that request went out. ``requests`` holds the
    same stages averaged over all the frame's requests; ``stitch`` is set once the frame was
    stitched on the CPU.
    """

    split: float = 0.0
    """Cutting the frame into tiles."""
    send: float = 0.0
    """Handing the batches to the backend (an in-process backend computes them here)."""
    requests: RequestStages = field(default_factory=RequestStages)
    last: RequestStages = field(default_factory=RequestStages)
    inference: float = 0.0
    """The forward passes of all the frame's requests, summed (work, not latency; a pass that
    computed several requests counts once)."""
    collect: float = 0.0
    total: float = 0.0
    stitch: float = 0.0

    def critical_path(self) -> dict[str, float]:
        """The stages of the frame's latency, in order (the benchmark's columns)."""
        return {"split": self.split, "send": self.send, "queue": self.last.queue, "inference": self.last.inference,
                "transfer": self.last.transfer, "collect": self.collect, "stitch": self.stitch}


@dataclass
class FrameResult:
    """One frame, stylised: tiles in tile order for the GPU compositor, and a CPU stitch.

    Attributes:
        frame_id: the id given at :meth:`FramePipeline.submit`.
        grid: the tile grid of one eye.
        tiles: (eyes * len(grid), out_h, out_w, 3) uint8, tile ``t`` of eye ``e`` at
            ``e * len(grid) + t``; fallbacks already filled in. Read-only by convention. On the
            shared-memory frame ring they are the ring slot the workers wrote into: valid until
            the next result is taken and another frame submitted (copy them to keep them).
        fallback: tile index -> :class:`Fallback`, for every tile not freshly stylised.
        skipped: indices of the tiles the caller asked not to stylise (``submit(skip=)``),
            filled as fallbacks are (the previous frame's tile, else the raw input); None: none.
        stats: the (2, C) statistics the tiles were normalised with (None: the stream's first
            frame, each batch normalised with its own joint statistics).
        timings: where the frame's time went (:class:`Timings`).
        scales: each tile's scale (:mod:`tiles.foveate`): a scaled tile's output fills the
            top-left corner of its slot and is upscaled when stitched. None: all full size.
    """

    frame_id: int
    grid: TileGrid
    tiles: np.ndarray
    fallback: dict[int, Fallback]
    stats: np.ndarray | None
    timings: Timings
    ramp: str = settings.RAMP
    scales: np.ndarray | None = None
    skipped: np.ndarray | None = None
    _stitched: np.ndarray | None = field(default=None, repr=False)

    @property
    def eyes(self) -> int:
        return len(self.tiles) // len(self.grid)

    @property
    def complete(self) -> bool:
        """Every tile freshly stylised."""
        return not self.fallback

    def stitched(self) -> np.ndarray:
        """(eyes, H, W, 3) uint8 eye images, stitched on the CPU (computed once)."""
        if self._stitched is None:
            start = time.perf_counter()
            self._stitched = tiles.stitch(self.tiles, self.grid, self.ramp, self.scales)
            self.timings.stitch = time.perf_counter() - start
        return self._stitched


@dataclass(eq=False)
class _Level:
    """A frame's tiles at one scale: their indices, the tiles as cut and where the workers write."""

    scale: int
    grid: TileGrid
    indices: np.ndarray
    inputs: np.ndarray | None
    """None on the frame ring: the workers cut the tiles from the slot."""
    out: np.ndarray


@dataclass(eq=False)
class _Frame:
    frame_id: int
    style: str
    start: float
    deadline: float | None
    stats: np.ndarray | None
    levels: list[_Level]
    tiles: np.ndarray
    scales: np.ndarray | None
    slot: int | None = None
    """Its frame-ring slot (None: tiles sent as pixels)."""
    source: np.ndarray | None = None
    """On the ring: the slot's frame, for raw fallbacks (a view that outlives a replaced slot)."""
    requests: dict[int, tuple[_Level, slice]] = field(default_factory=dict)
    received: np.ndarray | None = None
    """Tiles back or skipped: nothing to wait for."""
    skipped: np.ndarray | None = None
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)
    moments: dict[int, np.ndarray] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    last_arrival: float | None = None

    @property
    def complete(self) -> bool:
        return bool(self.received.all())


class FramePipeline(Resource):
    """Stereo (or mono) frames through a backend, several in flight, each by a deadline.

    Not thread-safe: use it, and its backend, from one thread at a time (it may be a
    background thread; a ZeroMQ client may be handed over between threads, not shared).
    It owns its backend: :meth:`close` closes it.

    Args:
        backend: a :class:`~vrstyle.transport.client.TransportClient`, a
            :class:`~vrstyle.transport.local.LocalBackend`, or a style engine (run here).
        grid: the tile grid of one eye (see :meth:`plan`).
        style: the style the workers serve.
        eyes: images per frame (2: stereo).
        deadline_s: seconds after :meth:`submit` when missing tiles are filled by fallback
            (None: wait for every tile).
        request_tiles: tiles per request (smaller spreads a frame over more workers).
        depth: frames in flight at most; submitting another drops the oldest.
        momentum: weight of the past in the statistics' moving average.
        stats: (2, C) statistics to start from (else the first frame measures its own).
        ramp: feather ramp of :meth:`FrameResult.stitched`.
        rings: foveation (:func:`tiles.tile_scales`): tiles beyond ``rings[0]`` of each eye's
            centre run at 1/2, beyond ``rings[1]`` at 1/4 (the grid's cores must allow it: see
            :meth:`plan`). None: every tile at full resolution.

    >>> from vrstyle.transport.local import LocalBackend
    >>> class Invert:  # a stand-in engine: any object with the StyleEngine methods works
    ...     stats_channels = 1
    ...     def stylize_and_measure(self, tiles, stats, crop, margin, bounds=None):
    ...         out = 255 - tiles[:, crop:tiles.shape[1] - crop, crop:tiles.shape[2] - crop]
    ...         return out, np.ones((1 if stats is None else len(tiles), 3, 1))
    >>> pipe = FramePipeline.plan(LocalBackend(Invert()), 64, 96, "invert", tile=32, halo=8, overlap=4)
    >>> result = pipe.process(np.zeros((2, 64, 96, 3), np.uint8))
    >>> result.tiles.shape, result.complete, int(result.stitched().min())
    ((12, 40, 40, 3), True, 255)
    """

    def __init__(self, backend: "Backend | StyleEngine", grid: TileGrid, style: str, *, eyes: int = 2,
                 deadline_s: float | None = settings.FRAME_DEADLINE_S, request_tiles: int = settings.REQUEST_TILES,
                 depth: int = settings.PIPELINE_DEPTH, momentum: float = settings.STATS_MOMENTUM,
                 stats: np.ndarray | None = None, ramp: str = settings.RAMP,
                 rings: tuple[float, ...] | None = None):
        if eyes < 1 or request_tiles < 1 or depth < 1:
            raise VrstyleError(f"eyes, request_tiles and depth must be at least 1, got {eyes}, {request_tiles}, {depth}")
        if deadline_s is not None and deadline_s <= 0:
            raise VrstyleError(f"deadline must be positive, got {deadline_s}")
        smooth_stats(None, np.zeros(1), momentum)  # validates momentum
        tiles.tile_weights(grid, 0, ramp)  # validates the ramp
        self._level_grids = {1: grid}
        if rings is not None:
            tiles.tile_scales(grid, (0, 0), rings)  # validates the rings
            for scale in tiles.SCALES[1:len(rings) + 1]:
                self._level_grids[scale] = tiles.level_grid(grid, scale, settings.ALIGN)
        self.rings = rings
        self.backend = as_backend(backend)
        self.grid, self.eyes, self.deadline_s = grid, eyes, deadline_s
        self.request_tiles, self.depth, self.momentum, self.ramp = request_tiles, depth, momentum, ramp
        self._style = style
        self._stats = stats
        self._bounds = np.tile(grid.bounds(), (eyes, 1))  # where the eyes lie in each tile, as cut
        self._frames: dict[int, _Frame] = {}
        self._requests: dict[int, _Frame] = {}
        self._previous: np.ndarray | None = None
        self._previous_ok: np.ndarray | None = None
        self._previous_scales: np.ndarray | None = None
        self._ring: FrameRing | None = None
        self._ring_state = "untried"  # then "on" or "off"
        self._ring_requests: dict[int, int] = {}  # request id -> slot, until its reply comes (even stale)
        self._held_slot: int | None = None  # the slot of the last result (the fallback tiles)
        self._offered_slot: int | None = None  # the slot frame_buffer() gave out for the next frame
        self._last_id = -1
        self.counters: dict[str, int] = defaultdict(int)

    @classmethod
    def plan(cls, backend: "Backend | StyleEngine", eye_height: int, eye_width: int, style: str, *,
             tile: int | tuple[int, int] = settings.TILE, halo: int = settings.HALO, overlap: int = settings.OVERLAP,
             workers: int | None = None, **options) -> "FramePipeline":
        """A pipeline with the grid planned for the eye size: tiles of at most ``tile`` px, or
        (``workers`` given) about that many balanced tiles per eye; with ``rings`` in
        ``options``, cores that divide down to every scale used."""
        rings = options.get("rings")
        if workers is not None:
            grid = tiles.plan_grid_for_workers(eye_height, eye_width, workers, halo, overlap, settings.ALIGN)
        else:
            core_align = settings.ALIGN * (1 if rings is None else tiles.SCALES[len(rings)])
            grid = tiles.plan_grid(eye_height, eye_width, tile, halo, overlap, settings.ALIGN, core_align)
        return cls(backend, grid, style, **options)

    @property
    def style(self) -> str:
        return self._style

    @style.setter
    def style(self, name: str) -> None:
        """Switch style; statistics and previous tiles belong to the old model and are forgotten."""
        self._style = name
        self.reset()

    @property
    def stats(self) -> np.ndarray | None:
        """The (2, C) statistics the next frame will be normalised with."""
        return self._stats

    @property
    def in_flight(self) -> list[int]:
        """Ids of frames submitted and not yet collected or dropped."""
        return list(self._frames)

    def reset(self, stats: np.ndarray | None = None) -> None:
        """Forget the stream's statistics and previous tiles (a scene cut, a new style)."""
        self._stats, self._previous, self._previous_ok, self._previous_scales = stats, None, None, None

    def hold(self, frames: int) -> None:
        """Keep at least ``frames`` frames in flight (a consumer showing frame t - N needs N + 1)."""
        self.depth = max(self.depth, frames)

    def submit(self, eyes: np.ndarray, frame_id: int | None = None,
               deadline_s: float | None | EllipsisType = ..., centres: np.ndarray | None = None,
               skip: np.ndarray | None = None) -> int:
        """Cut a frame into tiles and send them off; returns at once.

        Args:
            eyes: (eyes, H, W, 3 or 4) uint8. RGBA goes to the workers as is (they ignore
                alpha; dropping it here would cost a slow strided copy); pass RGB to save
                bandwidth on remote links.
            frame_id: increasing id (default: the last plus one).
            deadline_s: this frame's deadline after submit (default: the pipeline's
                ``deadline_s``; a headset sets each frame's from its display period).
            centres: with foveation, (eyes, 2) (y, x) pixels each eye's rings centre on: its
                optical centre or gaze point (default: the middle of the eye).
            skip: (eyes * len(grid),) bool: tiles not to stylise, because the caller fills
                their pixels another way (e.g. reprojected from the other eye); see
                :attr:`FrameResult.skipped`.

        Returns:
            The frame id, for :meth:`result`.

        Raises:
            GridError: the frame does not fit the grid.
            ValueError: a frame id not above the last one.
            VrstyleError: the backend cannot send (e.g. no broker answers the client's first
                status request).
        """
        start = time.monotonic()
        expected = (self.eyes, self.grid.height, self.grid.width)
        if not isinstance(eyes, np.ndarray) or eyes.dtype != np.uint8 or eyes.shape[:3] != expected \
                or eyes.ndim != 4 or eyes.shape[3] not in (3, 4):
            raise GridError(f"frame must be {expected + ('3|4',)} uint8, got {getattr(eyes, 'shape', '?')} "
                            f"{getattr(eyes, 'dtype', type(eyes).__name__)}")
        frame_id = self._last_id + 1 if frame_id is None else int(frame_id)
        if frame_id <= self._last_id:
            raise ValueError(f"frame id {frame_id} is not above the last one ({self._last_id})")
        self._last_id = frame_id
        while len(self._frames) >= self.depth:
            self._drop(min(self._frames))
        count = self.eyes * len(self.grid)
        if skip is not None:
            skip = np.asarray(skip)
            if skip.shape != (count,) or skip.dtype != bool:
                raise GridError(f"skip must be ({count},) bool, one per tile, got {skip.shape} {skip.dtype}")
        scales = None if self.rings is None else self._scales(centres)
        ring = self._frame_ring(eyes.shape[3]) if scales is None else None
        slot, bottom_up = self._take_offer(ring, eyes)
        in_place = slot is not None
        if ring is not None and slot is None:
            slot = ring.acquire()
        if slot is not None:
            out_tiles = ring.output(slot)
            levels = [_Level(1, self.grid, np.arange(count), None, out_tiles)]
        else:
            out_tiles = np.empty((count,) + self.grid.out_shape + (3,), np.uint8)
            levels = self._cut(eyes, scales, out_tiles)
        split = time.monotonic()
        deadline_s = self.deadline_s if deadline_s is ... else deadline_s
        deadline = None if deadline_s is None else start + deadline_s
        raw = None if slot is None else ring.frame(slot)[:, ::-1] if bottom_up else ring.frame(slot)
        frame = _Frame(frame_id, self._style, start, deadline, self._stats, levels, out_tiles, scales, slot, raw,
                       received=np.zeros(count, bool) if skip is None else skip.copy(), skipped=skip)
        self.counters["skipped_tiles"] += 0 if skip is None else int(skip.sum())
        self._frames[frame_id] = frame
        if slot is not None:
            copying = self._send_ring_frame(frame, ring, None if in_place else eyes, deadline, bottom_up)
            frame.timings.split, frame.timings.send = split - start + copying, time.monotonic() - split - copying
            self.counters["frames"] += 1
            self.counters["ring_frames"] += 1
            self.counters["ring_frames_in_place"] += in_place
            return frame_id
        for level in levels:
            bounds = self._bounds if level.scale == 1 and scales is None else \
                level.grid.bounds(level.indices % len(self.grid))
            for part in _parts(~frame.received[level.indices], self.request_tiles):
                budget = None if deadline is None else max(deadline - time.monotonic(), 1e-6)
                rid = self.backend.submit(TileBatch(self._style, level.inputs[part], frame.stats, crop=level.grid.halo,
                                                    margin=level.grid.margin, frame_id=frame_id,
                                                    first_tile=int(level.indices[part.start]), deadline_s=budget,
                                                    out=level.out[part], bounds=bounds[part]))
                frame.requests[rid] = (level, part)
                self._requests[rid] = frame
        frame.timings.split, frame.timings.send = split - start, time.monotonic() - split
        self.counters["frames"] += 1
        return frame_id

    def frame_buffer(self, channels: int = 3) -> np.ndarray | None:
        """Shared memory to put the next frame in, so that :meth:`submit` copies nothing.

        A frame-ring slot's (eyes, H, W, channels) uint8 pixels, held for the next submit: read
        or render the eyes into it and submit it, or its rows reversed (``buffer[:, ::-1]``)
        where they went in bottom-up, as GL reads textures back (the workers cut from the rows
        reversed). Submitting other pixels, or asking again, lets the slot go.

        Returns:
            The buffer, or None where frames go as pixels (no workers on this host, foveation,
            another channel count than the ring's) or no slot is free: then submit as usual.
        """
        self._let_offer_go()
        ring = self._frame_ring(channels) if self.rings is None else None
        self._offered_slot = None if ring is None else ring.acquire()
        return None if self._offered_slot is None else ring.frame(self._offered_slot)

    def _take_offer(self, ring: "FrameRing | None", eyes: np.ndarray) -> tuple[int | None, bool]:
        """(the slot :meth:`frame_buffer` gave out, whether ``eyes`` are its rows reversed) when
        ``eyes`` are that buffer or its rows reversed; else (None, False), the slot let go."""
        slot = self._offered_slot
        if slot is not None and ring is self._ring:
            buffer = ring.frame(slot)
            for bottom_up, view in ((False, buffer), (True, buffer[:, ::-1])):
                if (eyes.shape, eyes.strides, eyes.ctypes.data) == (view.shape, view.strides, view.ctypes.data):
                    self._offered_slot = None
                    return slot, bottom_up
        self._let_offer_go()
        return None, False

    def _let_offer_go(self) -> None:
        if self._offered_slot is not None:
            self._ring.release(self._offered_slot)
            self._offered_slot = None

    def _frame_ring(self, channels: int) -> "FrameRing | None":
        """The shared-memory frame ring for frames of ``channels``, made on first use where the
        backend offers one (a client whose workers share this host); None: tiles as pixels."""
        if self._ring_state == "untried":
            make = getattr(self.backend, "frame_ring", None)
            spec = FrameSpec(self.eyes, self.grid)
            self._ring = None if make is None else make(self._style, spec, channels, self.depth + 2)
            self._ring_state = "on" if self._ring is not None else "off"
            log.debug("frame ring %s", self._ring_state)
        ring = self._ring if self._ring_state == "on" else None
        return ring if ring is not None and ring.channels == channels else None

    def _send_ring_frame(self, frame: _Frame, ring: "FrameRing", eyes: np.ndarray | None, deadline: float | None,
                         bottom_up: bool) -> float:
        """Each eye copied into the frame's slot (``eyes`` None: already there, its rows
        ``bottom_up`` or not) and at once its share of a few requests naming the slot's tiles by
        index (one hold on the slot per request), so workers start on the first eye while the
        next is copied. Returns the seconds spent copying."""
        level, wanted, per_eye = frame.levels[0], ~frame.received, len(self.grid)
        size = max(self.request_tiles, -(-int(wanted.sum()) // settings.RING_REQUESTS))
        copying = 0.0
        if eyes is None:
            ring.stamp(frame.slot, frame.frame_id)
        for eye in range(self.eyes):
            start = time.monotonic()
            if eyes is not None:
                ring.fill(frame.slot, frame.frame_id, eyes[eye:eye + 1], eye)
            copying += time.monotonic() - start
            ours = np.zeros_like(wanted)
            ours[eye * per_eye:(eye + 1) * per_eye] = wanted[eye * per_eye:(eye + 1) * per_eye]
            for part in _parts(ours, size):
                budget = None if deadline is None else max(deadline - time.monotonic(), 1e-6)
                batch = FrameBatch(self._style, ring.spec, ring.channels, part.start, part.stop - part.start,
                                   frame.frame_id, frame.stats, budget, bottom_up)
                rid = self.backend.submit_frame(batch, ring, frame.slot)
                ring.hold(frame.slot)
                self._ring_requests[rid] = frame.slot
                frame.requests[rid] = (level, part)
                self._requests[rid] = frame
        return copying

    def _ring_reply(self, reply: Reply) -> None:
        """A frame-ring request is answered (perhaps stale): its hold on the slot ends; a slot a
        worker presumed dead may still write into is replaced; a ring the workers cannot reach
        is given up for pixels."""
        slot = self._ring_requests.pop(reply.request_id)
        self._ring.release(slot)
        if reply.redispatched or reply.code == Code.WORKER_DIED:
            self._ring.retire(slot)
        if reply.status != Status.OK and reply.code in (Code.SHM, Code.NO_LOCAL_WORKER) and self._ring_state == "on":
            log.warning("frame ring given up, tiles go as pixels from now on: %s", reply.message)
            self._ring_state = "off"

    def _scales(self, centres: np.ndarray | None) -> np.ndarray:
        """Each tile's scale for eyes centred on ``centres`` (default: the middles)."""
        if centres is None:
            centres = np.tile([self.grid.height / 2, self.grid.width / 2], (self.eyes, 1))
        centres = np.asarray(centres, dtype=np.float64)
        if centres.shape != (self.eyes, 2) or not np.isfinite(centres).all():
            raise GridError(f"foveation centres must be ({self.eyes}, 2) finite (y, x) pixels, got {centres.tolist()}")
        return np.concatenate([tiles.tile_scales(self.grid, tuple(centre), self.rings) for centre in centres])

    def _cut(self, eyes: np.ndarray, scales: np.ndarray | None, out_tiles: np.ndarray) -> list[_Level]:
        """The frame's tiles by scale; full-size tiles of an unfoveated frame come back straight
        into ``out_tiles``, scaled ones into their own arrays (copied into the slots' corners when
        the frame finishes)."""
        if scales is None:  # RGBA stays RGBA: workers drop alpha for free, numpy slowly
            return [_Level(1, self.grid, np.arange(len(out_tiles)), tiles.cut(eyes, self.grid), out_tiles)]
        levels, per_eye = [], len(self.grid)
        for scale in np.unique(scales).tolist():
            grid, indices = self._level_grids[scale], np.flatnonzero(scales == scale)
            images = tiles.downscale(eyes, scale)
            inputs = np.concatenate([tiles.cut(images[eye:eye + 1], grid, (indices[indices // per_eye == eye] % per_eye))
                                     for eye in range(self.eyes)])
            levels.append(_Level(scale, grid, indices, inputs, np.empty((len(indices),) + grid.out_shape + (3,), np.uint8)))
        return levels

    def ready(self, frame_id: int) -> bool:
        """Whether every tile of the frame is back (collects arrived replies; never waits)."""
        self._pump(0.0)
        frame = self._frames.get(frame_id)
        return frame is not None and frame.complete

    def result(self, frame_id: int, timeout: float | None = None) -> FrameResult:
        """The frame once all its tiles are back, or at its deadline (or after ``timeout``
        s, if sooner) with fallbacks for the rest. Older frames still in flight are dropped.

        Raises:
            KeyError: the frame is not in flight (never submitted, dropped or collected).
        """
        frame = self._frames.get(frame_id)
        if frame is None:
            raise KeyError(f"frame {frame_id} is not in flight (dropped as stale, or already collected)")
        for older in [f for f in self._frames if f < frame_id]:
            self._drop(older)
        limits = [t for t in (frame.deadline, None if timeout is None else time.monotonic() + timeout) if t is not None]
        end = min(limits) if limits else None
        self._pump(0.0)  # whatever has arrived counts, even past the deadline
        while not frame.complete:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._pump(settings.CONNECT_TIMEOUT_S if remaining is None else remaining)
        return self._finish(frame)

    def process(self, eyes: np.ndarray) -> FrameResult:
        """:meth:`submit` then :meth:`result`: one frame, synchronously."""
        return self.result(self.submit(eyes))

    def _raw_tile(self, frame: _Frame, index: int) -> np.ndarray:
        """Tile ``index``'s core and overlap as it came in (RGB), for a fallback."""
        level = next(level for level in frame.levels if index in level.indices)
        if level.inputs is not None:
            piece = level.inputs[np.searchsorted(level.indices, index)]
        else:  # on the ring: cut from the slot's frame
            eye, tile = divmod(index, len(self.grid))
            piece = tiles.cut(frame.source[eye:eye + 1], self.grid, [tile])[0]
        return tiles.crop_halo(piece, level.grid)[..., :3]

    def _free(self) -> None:
        self.backend.close()

    def _pump(self, timeout: float) -> None:
        for reply in self.backend.poll(timeout):
            if reply.request_id in self._ring_requests:
                self._ring_reply(reply)
            frame = self._requests.pop(reply.request_id, None)
            if frame is None:
                self.counters["stale_replies"] += 1
                continue
            level, part = frame.requests.pop(reply.request_id)
            indices = level.indices[part]
            if reply.status == Status.OK:
                frame.received[indices] = True
                moments = np.array(reply.moments, dtype=np.float64)
                moments[..., 0, :] *= level.scale ** 2  # a scaled tile's pixels stand for scale^2 of the eye's
                frame.moments[int(indices[0])] = moments
                frame.replies.append(reply)
                frame.last_arrival = time.monotonic()
            else:
                status = str(reply.status)  # the plain spelling, for counters and fallbacks
                self.counters[status] += len(indices)
                for index in indices.tolist():
                    frame.failures[index] = (status, reply.message)

    def _drop(self, frame_id: int) -> None:
        frame = self._frames.pop(frame_id)
        self._withdraw(frame)
        if frame.slot is not None:
            self._ring.release(frame.slot)
        self.counters["dropped_frames"] += 1

    def _withdraw(self, frame: _Frame) -> None:
        """Forget the frame's outstanding requests (late replies are then stale) and cancel them,
        so no worker computes a frame nobody will show."""
        if frame.requests:
            self.backend.cancel(frame.frame_id)
            self.counters["cancelled_requests"] += len(frame.requests)
        for rid in frame.requests:
            self._requests.pop(rid, None)

    def _finish(self, frame: _Frame) -> FrameResult:
        self._frames.pop(frame.frame_id)
        result_tiles = frame.tiles.copy() if frame.requests else frame.tiles  # late replies must not write here
        self._withdraw(frame)
        scales = np.ones(len(result_tiles), np.int8) if frame.scales is None else frame.scales.copy()
        for level in frame.levels:
            if level.out is not frame.tiles:
                height, width = level.grid.out_shape
                result_tiles[level.indices, :height, :width] = level.out
        fallback: dict[int, Fallback] = {}
        for index in np.flatnonzero(~frame.received).tolist():
            reason, message = frame.failures.get(index, ("late", "not back by the deadline"))
            fallback[index] = Fallback(reason, self._fill(frame, result_tiles, scales, index), message)
        skipped = None if frame.skipped is None else np.flatnonzero(frame.skipped)
        for index in () if skipped is None else skipped.tolist():
            self._fill(frame, result_tiles, scales, index)
        if fallback:
            self.counters["late"] += sum(f.reason == "late" for f in fallback.values())
        if frame.slot is not None:  # the slot's hold passes from the frame in flight to the last result
            if self._held_slot is not None:
                self._ring.release(self._held_slot)
            self._held_slot = frame.slot
        if frame.style == self._style:  # else the stream was reset for a new style meanwhile
            previous_ok = self._previous_ok if self._previous_ok is not None else np.zeros(len(frame.received), bool)
            fresh = frame.received if frame.skipped is None else frame.received & ~frame.skipped
            self._previous, self._previous_ok = result_tiles, fresh | previous_ok
            self._previous_scales = scales
            if frame.moments and next(iter(frame.moments.values())).shape[-1]:  # a network without norms has none
                # Merged in tile order, so the result does not depend on arrival order.
                measured = moments_to_stats(combine_moments(frame.moments[k] for k in sorted(frame.moments)))
                known = self._stats if self._stats is not None and self._stats.shape == measured.shape else None
                self._stats = smooth_stats(known, measured, self.momentum)
        end = time.monotonic()
        timings = frame.timings
        if frame.replies:
            stages = [RequestStages.of(reply) for reply in frame.replies]
            timings.requests = RequestStages(*np.mean([astuple(stage) for stage in stages], axis=0).tolist())
            timings.last, timings.collect = stages[-1], end - frame.last_arrival
            timings.inference = sum(reply.infer_s * reply.pass_share for reply in frame.replies)
        else:
            timings.collect = end - frame.start - timings.split - timings.send
        timings.total = end - frame.start
        return FrameResult(frame.frame_id, self.grid, result_tiles, fallback, frame.stats, timings, self.ramp,
                           None if (scales == 1).all() else scales, skipped)

    def _fill(self, frame: _Frame, result_tiles: np.ndarray, scales: np.ndarray, index: int) -> str:
        """Tile ``index`` of a result from the previous frame's, else from the raw input; which."""
        if self._previous_ok is not None and self._previous_ok[index]:
            result_tiles[index], scales[index] = self._previous[index], self._previous_scales[index]
            return "previous"
        raw = self._raw_tile(frame, index)
        result_tiles[index, :raw.shape[0], :raw.shape[1]] = raw
        return "raw"


def _parts(wanted: np.ndarray, size: int) -> Iterator[slice]:
    """Slices of at most ``size`` consecutive positions, all ``wanted``, covering every wanted one in order.

    >>> [(p.start, p.stop) for p in _parts(np.array([1, 1, 1, 0, 1, 1], bool), 2)]
    [(0, 2), (2, 3), (4, 6)]
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], wanted.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        for first in range(start, stop, size):
            yield slice(first, min(first + size, stop))
