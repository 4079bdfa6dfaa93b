"""A style worker: one process per device, joining a transport loop to style engines.

Two threads. The I/O thread owns the DEALER socket to the broker: it announces READY,
validates every request (an ERROR reply for anything malformed; the worker carries on),
keeps the heartbeat going in both directions (zguide "Paranoid Pirate": a broker silent for
``liveness`` intervals means reconnect with back-off) and forwards replies. The compute
thread takes requests from a queue, waits up to ``batch_window_s`` for more to arrive,
runs them through :func:`process` (requests with given statistics and the same tile shape
share one forward pass) and hands the replies back over an inproc socket. Heartbeats therefore
keep flowing while a long batch runs. A request the broker cancelled (its frame superseded)
before the compute thread took it is answered LOST, not run.

Engines are duck-typed (:class:`~vrstyle.models.engine.StyleEngine`: ``stats_channels``,
``stylize_and_measure``, ``measure``), so this module imports no torch: the ``vrstyle worker``
command loads the models and hands them in.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import zmq

import tiles
from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments
from vrstyle.resources import Resource
from vrstyle.transport import codec
from vrstyle.transport import protocol as P
from vrstyle.transport.security import HANDSHAKE_FAILURES, CurveKeys, check_handshake
from vrstyle.transport.shm import SegmentCache, host_id

log = logging.getLogger(__name__)

CUT_SHAPES_KEPT = 8
"""Shapes of reused cut buffers a worker keeps (a stream uses one or two)."""
CANCELS_KEPT = 4096
"""Cancelled request ids a worker remembers (a CANCEL may come after its request finished)."""


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


class CancelledSet:
    """Request ids the broker cancelled, shared by the I/O thread (adds) and the compute thread
    (takes each once, before starting the request). Ids of requests already finished when
    their CANCEL came are never taken: only the newest :data:`CANCELS_KEPT` are remembered."""

    def __init__(self) -> None:
        self._ids: dict[int, None] = {}
        self._lock = threading.Lock()

    def add(self, request_id: int) -> None:
        with self._lock:
            self._ids[request_id] = None
            if len(self._ids) > CANCELS_KEPT:
                del self._ids[next(iter(self._ids))]

    def take(self, request_id: int) -> bool:
        """Whether the request was cancelled (and forget it)."""
        with self._lock:
            return self._ids.pop(request_id, False) is None


@dataclass
class Outcome:
    """What :func:`process` made of a job: tiles (None for MEASURE or when written to
    ``job.out``) and (3, C) moments, or an error code and message."""

    tiles: np.ndarray | None = None
    moments: np.ndarray | None = None
    code: int = 0
    message: str = ""
    infer_s: float = 0.0


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
        for i, outcome in zip(members, results):
            outcome.infer_s = elapsed
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
        pixels = np.concatenate([job.tiles for job in jobs])
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


def _deliver(job: Job, tiles: np.ndarray, moments: np.ndarray) -> Outcome:
    if job.out is None:
        return Outcome(tiles=np.ascontiguousarray(tiles), moments=moments)
    job.out[...] = tiles
    return Outcome(moments=moments)


class StyleWorker(Resource):
    """The worker process's transport loop. Call :meth:`run`; stop it with the event.

    The compute thread and its inproc socket live from construction to :meth:`close` (which
    :meth:`run` calls when it returns); one connection to the broker lives per session.

    Args:
        endpoint: the broker's worker endpoint, e.g. ``tcp://gpu-host:5556``.
        engines: style name -> engine (several names may share one engine).
        device: reported in READY, for people reading the broker's status.
        credit: requests this worker may hold at once (the broker never sends more).
        batch_window_s: how long to wait for more requests to batch with the first.
        max_batch_tiles: the most tiles in one forward pass.
        heartbeat_s, liveness: heartbeat interval and silent intervals before reconnecting.
        keys: CURVE keys (``peer_keys(DIR, "worker")``), or None on loopback.
    """

    def __init__(self, endpoint: str, engines: Mapping[str, Engine], *, device: str = "cpu",
                 credit: int = settings.WORKER_CREDIT, batch_window_s: float = settings.BATCH_WINDOW_S,
                 max_batch_tiles: int = settings.WORKER_BATCH_TILES, heartbeat_s: float = P.HEARTBEAT_INTERVAL_S,
                 liveness: int = P.HEARTBEAT_LIVENESS, keys: CurveKeys | None = None,
                 context: zmq.Context | None = None):
        if not engines:
            raise VrstyleError("a worker needs at least one style")
        if credit < 1 or max_batch_tiles < 1:
            raise VrstyleError(f"credit and batch size must be at least 1, got {credit} and {max_batch_tiles}")
        self.endpoint, self.engines, self.device = endpoint, dict(engines), device
        self.credit, self.batch_window_s, self.max_batch_tiles = credit, batch_window_s, max_batch_tiles
        self.heartbeat_s, self.liveness, self.keys = heartbeat_s, liveness, keys
        self.context = context or zmq.Context.instance()
        self.host = host_id()
        self.counters: Counter[str] = Counter()
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._cancelled = CancelledSet()
        self._cut_buffers: dict[tuple[int, ...], list[np.ndarray]] = {}
        results_endpoint = f"inproc://vrstyle-worker-{id(self):x}"
        with self.building():
            self._results = self.own(self.context.socket(zmq.PAIR))
            self._results.linger = 0
            self._results.bind(results_endpoint)
            self._compute = threading.Thread(target=self._compute_loop, args=(results_endpoint,),
                                             name="vrstyle-compute", daemon=True)
            self._compute.start()
            self.on_close(self._stop_compute)

    def info(self) -> dict[str, Any]:
        """The READY announcement."""
        return {"styles": {name: engine.stats_channels for name, engine in self.engines.items()},
                "host": self.host, "device": self.device, "credit": self.credit, "pid": os.getpid()}

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set: connect, announce, answer, reconnect when the broker goes
        quiet; then close."""
        stop = stop or threading.Event()
        delay = P.RECONNECT_MIN_S
        try:
            while not stop.is_set():
                if self._session(stop):
                    delay = P.RECONNECT_MIN_S  # the broker answered this time
                if not self._compute.is_alive():
                    raise VrstyleError("the inference thread stopped; see the log above")
                if not stop.is_set():
                    log.warning("broker at %s silent for %.1f s; reconnecting in %.2f s", self.endpoint,
                                self.liveness * self.heartbeat_s, delay)
                    stop.wait(delay)
                    delay = min(2 * delay, P.RECONNECT_MAX_S)
        finally:
            self.close()
            log.info("worker stopped: %s", dict(self.counters))

    def _stop_compute(self) -> None:
        """Let the compute thread finish its batch and leave."""
        self._inbox.put(None)
        self._compute.join(timeout=10)

    def _session(self, stop: threading.Event) -> bool:
        """One connection to the broker; returns whether the broker was ever heard from."""
        with self.context.socket(zmq.DEALER) as socket:
            socket.linger = 0
            socket.setsockopt(zmq.MAXMSGSIZE, P.MAX_SOCKET_MESSAGE_BYTES)
            if self.keys is not None:
                self.keys.apply(socket)
            try:
                socket.connect(self.endpoint)
            except zmq.ZMQError as exc:
                raise VrstyleError(f"cannot connect to broker at {self.endpoint}: {exc.strerror}") from None
            with socket.get_monitor_socket(HANDSHAKE_FAILURES) as monitor:
                try:
                    return self._session_loop(socket, monitor, stop)
                finally:
                    socket.disable_monitor()

    def _session_loop(self, socket: zmq.Socket, monitor: zmq.Socket, stop: threading.Event) -> bool:
        """The session's loop on a connected socket; a refused handshake ends it in one line."""
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._results, zmq.POLLIN)
        socket.send_multipart([P.Header(P.Kind.READY, host=self.host).pack(), P.encode_json(self.info())])
        heard = False
        expiry = time.monotonic() + self.liveness * self.heartbeat_s
        next_beat = time.monotonic() + self.heartbeat_s
        while not stop.is_set() and self._compute.is_alive():
            events = dict(poller.poll(timeout=1000 * min(self.heartbeat_s, 0.25)))
            now = time.monotonic()
            if monitor in events:
                check_handshake(monitor, self.keys is not None, self.endpoint)
            if socket in events:
                while socket.poll(0):
                    self._on_broker(socket, socket.recv_multipart(copy=False), now)
                heard, expiry = True, now + self.liveness * self.heartbeat_s
            if self._results in events:
                while self._results.poll(0):
                    socket.send_multipart(self._results.recv_multipart(copy=False), copy=False)
            if now >= next_beat:
                socket.send(P.Header(P.Kind.HEARTBEAT).pack())
                next_beat = now + self.heartbeat_s
            if now >= expiry:
                return heard
        socket.linger = int(1000 * self.heartbeat_s)  # let the goodbye out before closing
        socket.send(P.Header(P.Kind.DISCONNECT).pack())
        return True

    def _on_broker(self, socket: zmq.Socket, frames: list, now: float) -> None:
        try:
            header = P.Header.unpack(frames[0].buffer)
        except P.ProtocolError as exc:
            self._reject(socket, exc, None)
            return
        if header.kind == P.Kind.HEARTBEAT:
            return
        if header.kind == P.Kind.CANCEL:
            self._cancelled.add(header.request_id)
            return
        if header.kind == P.Kind.RECONNECT:
            socket.send_multipart([P.Header(P.Kind.READY, host=self.host).pack(), P.encode_json(self.info())])
            return
        try:
            job = self._job(frames, now)
        except P.ProtocolError as exc:
            self._reject(socket, exc, header)
            return
        self.counters["requests"] += 1
        self._inbox.put(job)

    def _job(self, frames: list, now: float) -> Job:
        request = P.parse_request(frames)
        h = request.header
        engine = self.engines.get(h.style)
        if engine is None:
            raise P.ProtocolError(P.Code.STYLE, f"this worker does not serve style {h.style!r} "
                                                f"(it serves {', '.join(sorted(self.engines))})", h.request_id)
        if request.stats is not None and request.stats.shape[1] != engine.stats_channels:
            raise P.ProtocolError(P.Code.STATS, f"statistics for {request.stats.shape[1]} channels, style {h.style!r} "
                                                f"has {engine.stats_channels}", h.request_id)
        tiles = None if request.pixels is None else np.frombuffer(request.pixels, np.uint8).reshape(h.in_shape)
        deadline = now + h.budget_us / 1e6 if h.budget_us else None
        # Shared memory is mapped in the compute thread, which owns the segment cache.
        return Job(h, tiles, request.stats, received=now, deadline=deadline, shm=request.shm, bounds=request.bounds,
                   frame=request.frame, coded=request.coded)

    def _reject(self, socket: zmq.Socket, exc: P.ProtocolError, header: P.Header | None) -> None:
        self.counters[f"rejected_{exc.code.label}"] += 1
        log.warning("rejected a request: %s", exc)
        socket.send_multipart(P.error_frames(P.Kind.ERROR, exc.code, f"worker: {exc}", header))

    def _compute_loop(self, results_endpoint: str) -> None:
        """The compute thread: batches from the inbox, replies to the I/O thread. It alone maps
        shared memory, so the segment cache is its own."""
        with self.context.socket(zmq.PAIR) as results, SegmentCache() as segments:
            results.linger = 0
            results.connect(results_endpoint)
            while (jobs := self._next_batch()) is not None:
                for frames in self._serve(jobs, segments):
                    results.send_multipart(frames, copy=False)

    def _next_batch(self) -> list[Job] | None:
        first = self._inbox.get()
        if first is None:
            return None
        jobs, tiles = [first], first.header.count
        until = time.monotonic() + self.batch_window_s
        while tiles < self.max_batch_tiles and self.credit > 1:
            try:
                job = self._inbox.get(timeout=max(until - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is None:
                self._inbox.put(None)
                break
            jobs.append(job)
            tiles += job.header.count
        return jobs

    def _cut_buffer(self, shape: tuple[int, ...], used: Counter[tuple[int, ...]]) -> np.ndarray:
        """An array of ``shape`` for tiles cut from a ring slot, reused batch after batch (the
        ``used[shape]``-th of that shape in this batch). Compute thread only."""
        buffers = self._cut_buffers.setdefault(shape, [])
        if len(self._cut_buffers) > CUT_SHAPES_KEPT:  # a client changed its grid: forget old shapes
            self._cut_buffers = {shape: buffers}
        index = used[shape]
        used[shape] += 1
        if index == len(buffers):
            buffers.append(np.empty(shape, np.uint8))
        return buffers[index]

    def _serve(self, jobs: list[Job], segments: SegmentCache) -> list[list]:
        """Replies for a batch of jobs: expired ones LOST, the rest processed per engine."""
        replies: list[list] = []
        now = time.monotonic()
        live: list[Job] = []
        buffers_used: Counter[tuple[int, ...]] = Counter()
        for job in jobs:
            if self._cancelled.take(job.header.request_id):
                self.counters["cancelled"] += 1
                self.counters["cancelled_tiles"] += job.header.count
                replies.append(P.error_frames(P.Kind.LOST, P.Code.CANCELLED, "cancelled before inference",
                                              job.header))
                continue
            if job.deadline is not None and now > job.deadline:
                self.counters["expired"] += 1
                replies.append(P.error_frames(P.Kind.LOST, P.Code.EXPIRED, "deadline passed before inference",
                                              job.header))
                continue
            if job.coded is not None:
                try:
                    job.tiles = codec.decode(*job.coded, P.codec_of(job.header.flags), job.header.in_shape)
                except codec.CodecError as exc:
                    replies.append(P.error_frames(P.Kind.ERROR, P.Code.PAYLOAD, f"worker: {exc}", job.header))
                    continue
            if job.shm is not None:
                try:
                    if job.frame is not None:
                        reads = getattr(self.engines[job.header.style], "reads_pixels", True)
                        cut_from_slot(job, segments, self._cut_buffer(job.header.in_shape, buffers_used) if reads
                                      else None)
                    else:
                        out_shape = job.header.out_shape if job.header.kind == P.Kind.STYLIZE else None
                        job.tiles, job.out = segments.views(job.shm, job.header.in_shape, out_shape)
                except P.ProtocolError as exc:
                    replies.append(P.error_frames(P.Kind.ERROR, exc.code, f"worker: {exc}", job.header))
                    continue
            live.append(job)
        by_engine: dict[int, list[Job]] = {}
        for job in live:
            by_engine.setdefault(id(self.engines[job.header.style]), []).append(job)
        for group in by_engine.values():
            start = time.monotonic()
            outcomes = process(self.engines[group[0].header.style], group)
            for job, outcome in zip(group, outcomes):
                if not outcome.code and job.stamp is not None and int(job.stamp[0]) != job.header.frame_id:
                    outcome = Outcome(code=P.Code.SHM, message=f"worker: ring slot overwritten with frame "
                                                               f"{int(job.stamp[0])} while frame "
                                                               f"{job.header.frame_id} was read from it")
                if outcome.code:
                    self.counters["failed"] += 1
                    replies.append(P.error_frames(P.Kind.ERROR, outcome.code, outcome.message, job.header))
                    continue
                self.counters["tiles"] += job.header.count
                queue_us = (start - job.received) * 1e6
                quality = int(job.coded[0][0]) if job.coded is not None else codec.QUALITY
                replies.append(P.result_frames(job.header, outcome.tiles, outcome.moments, queue_us,
                                               outcome.infer_s * 1e6, quality))
        return replies

