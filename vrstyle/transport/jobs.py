"""What a worker does with requests: batching them through a style engine, and cutting a
ring request's tiles from its frame slot.

Shared by the worker process (:mod:`vrstyle.transport.worker`) and the in-process backend
(:mod:`vrstyle.transport.local`), so both give identical tiles. No torch, no sockets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

import tiles
from vrstyle.normstats import combine_moments
from vrstyle.transport import protocol as P
from vrstyle.transport.shm import SegmentCache

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What a worker needs of a style network (see :class:`~vrstyle.models.engine.StyleEngine`):
    tiles come as (N, H, W, 3 or 4) uint8, alpha to be ignored; results are RGB."""

    stats_channels: int

    def stylize_and_measure(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int, margin: int,
                            bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def measure(self, tiles: np.ndarray, margin: int, bounds: np.ndarray | None = None,
                stats: np.ndarray | None = None, measure_to: int = 0) -> np.ndarray: ...


@dataclass
class Job:
    """One request on its way through :func:`process`."""

    header: P.Header
    tiles: np.ndarray
    stats: np.ndarray | None
    out: np.ndarray | None = None
    received: float = 0.0
    deadline: float | None = None
    shm: P.ShmDescriptor | None = None
    bounds: np.ndarray | None = None
    frame: P.FrameSpec | None = None
    coded: tuple[np.ndarray, memoryview] | None = None
    """Compressed pixels as received, decoded in the compute thread (:mod:`vrstyle.transport.codec`)."""
    stamp: np.ndarray | None = None
    """A frame job's slot stamp (int64 view): must still hold its frame id when the job is done."""

    def whole_bounds(self) -> np.ndarray:
        """The job's bounds, or bounds saying each tile is a whole image (to batch with others)."""
        if self.bounds is not None:
            return self.bounds
        h = self.header
        return np.tile(np.array([0, h.height, 0, h.width], P.BOUNDS_DTYPE), (h.count, 1))


def cut_from_slot(job: Job, segments: SegmentCache, into: np.ndarray | None) -> None:
    """A frame job's tiles cut from its ring slot into ``into`` (a reused array of the tiles'
    shape: a fresh one costs its page faults; None: a zero-stride stand-in, for an engine that
    reads no pixels), its output the slot's rows for them, its bounds from the grid; the slot
    must hold the job's frame.

    Raises:
        ProtocolError: the slot cannot be mapped, or holds another frame (``Code.SHM``).
    """
    h, spec = job.header, job.frame
    out_shape = spec.out_shape() if h.kind == P.Kind.STYLIZE else None
    raw, out = segments.views(job.shm, (job.shm.in_bytes,), out_shape)
    job.stamp = raw[:8].view("<i8")
    if int(job.stamp[0]) != h.frame_id:
        raise P.ProtocolError(P.Code.SHM, f"ring slot holds frame {int(job.stamp[0])}, not {h.frame_id}",
                              h.request_id)
    frame = raw[P.STAMP_BYTES:].reshape(spec.frame_shape(h.channels))
    if h.flags & P.FLAG_BOTTOM_UP:
        frame = frame[:, ::-1]
    indices = np.arange(h.first_tile, h.first_tile + h.count)
    per_eye = len(spec.grid)
    if into is None:
        job.tiles = np.broadcast_to(np.zeros((), np.uint8), h.in_shape)
    else:
        start = 0
        for eye in np.unique(indices // per_eye).tolist():
            chosen = indices[indices // per_eye == eye] % per_eye
            tiles.cut(frame[eye:eye + 1], spec.grid, chosen, out=into[start:start + len(chosen)])
            start += len(chosen)
        job.tiles = into
    job.bounds = spec.grid.bounds(indices % per_eye)
    job.out = None if out is None else out[h.first_tile:h.first_tile + h.count]


@dataclass
class Outcome:
    """What :func:`process` made of a job: tiles (None for MEASURE or when written to
    ``job.out``) and (3, C) moments, or an error code and message."""

    tiles: np.ndarray | None = None
    moments: np.ndarray | None = None
    code: int = 0
    message: str = ""
    infer_s: float = 0.0
    pass_tiles: int = 0
    """Tiles the forward pass computed (this job's and those batched with it)."""


def process(engine: Engine, jobs: Sequence[Job]) -> list[Outcome]:
    """Run requests for one engine, batching those that can share a forward pass.

    STYLIZE requests with given statistics and the same tile geometry go through one pass
    with per-tile statistics; each request's moments are merged from its own tiles'
    moments, so results do not depend on what shared the batch. A request without
    statistics (a stream's first frame) runs alone, normalised with and returning its
    batch's joint statistics; MEASURE requests run alone (a joint capture).

    Returns:
        One outcome per job, in order; engine failures become ``Code.WORKER`` outcomes.
    """
    outcomes: list[Outcome | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        h = job.header
        if h.kind == P.Kind.STYLIZE and job.stats is not None:
            groups.setdefault((h.height, h.width, h.channels, h.crop, h.margin), []).append(i)
        else:
            groups[("alone", i)] = [i]
    for members in groups.values():
        start = time.perf_counter()
        try:
            results = _run_group(engine, [jobs[i] for i in members])
        except Exception as exc:  # whatever the engine raises, the requests get an answer
            log.warning("inference failed for %d request(s): %s", len(members), exc, exc_info=log.isEnabledFor(
                logging.DEBUG))
            results = [Outcome(code=P.Code.WORKER, message=f"worker failed: {exc}") for _ in members]
        elapsed = time.perf_counter() - start
        pass_tiles = sum(jobs[i].header.count for i in members)
        for i, outcome in zip(members, results):
            outcome.infer_s, outcome.pass_tiles = elapsed, pass_tiles
            outcomes[i] = outcome
    return outcomes


def _run_group(engine: Engine, jobs: list[Job]) -> list[Outcome]:
    first = jobs[0]
    if first.header.kind == P.Kind.MEASURE:
        moments = engine.measure(first.tiles, first.header.margin, first.bounds, first.stats, first.header.measure_to)
        return [Outcome(moments=moments if moments.ndim == 2 else combine_moments(moments))]
    if first.stats is None:
        tiles, moments = engine.stylize_and_measure(first.tiles, None, first.header.crop, first.header.margin,
                                                    first.bounds)
        return [_deliver(first, tiles, combine_moments(moments))]
    if len(jobs) == 1:
        stats = first.stats
    else:
        stats = np.concatenate([np.broadcast_to(job.stats, (job.header.count, *job.stats.shape)) for job in jobs])
    if len(jobs) == 1:
        pixels = first.tiles
    elif getattr(engine, "reads_pixels", True):
        pixels = _joined([job.tiles for job in jobs])
    else:  # their shape is all it looks at: no copy of tiles it never reads
        count = sum(job.header.count for job in jobs)
        pixels = np.broadcast_to(np.zeros((), np.uint8), (count, *first.tiles.shape[1:]))
    bounds = None
    if any(job.bounds is not None for job in jobs):
        bounds = np.concatenate([job.whole_bounds() for job in jobs])
    tiles, moments = engine.stylize_and_measure(pixels, stats, first.header.crop, first.header.margin, bounds)
    outcomes, start = [], 0
    for job in jobs:
        end = start + job.header.count
        outcomes.append(_deliver(job, tiles[start:end], combine_moments(moments[start:end])))
        start = end
    return outcomes


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """``arrays`` end to end: a view where they are consecutive slices of one array (as a worker
    cuts a batch's tiles), else a copy (tens of MB a batch at a headset's tile sizes).

    >>> arena = np.arange(10)
    >>> _joined([arena[2:4], arena[4:7]]).base is arena, _joined([arena[2:4], arena[5:7]]).tolist()
    (True, [2, 3, 5, 6])
    """
    base, first = arrays[0].base, arrays[0]
    if (base is not None and base.flags.c_contiguous and base.shape[1:] == first.shape[1:]
            and all(a.base is base and a.flags.c_contiguous for a in arrays)
            and all(b.ctypes.data == a.ctypes.data + a.nbytes for a, b in zip(arrays, arrays[1:]))):
        start = (first.ctypes.data - base.ctypes.data) // base.strides[0]
        return base[start:start + sum(len(a) for a in arrays)]
    return np.concatenate(arrays)


def _deliver(job: Job, results: np.ndarray, moments: np.ndarray) -> Outcome:
    if job.out is None:
        return Outcome(tiles=np.ascontiguousarray(results), moments=moments)
    tiles.copy_frames(results, job.out)  # streaming stores: the client reads them, not this core
    return Outcome(moments=moments)
