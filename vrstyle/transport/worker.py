"""A style worker: one process per device, joining a transport loop to style engines.

Two threads. The I/O thread owns the DEALER socket to the broker: it announces READY,
validates every request (an ERROR reply for anything malformed; the worker carries on),
keeps the heartbeat going in both directions (zguide "Paranoid Pirate": a broker silent for
``liveness`` intervals means reconnect with back-off) and forwards replies. The compute
thread takes requests from a queue, waits up to ``batch_window_s`` for more to arrive,
runs them through :func:`~vrstyle.transport.jobs.process` (requests with given statistics and the same tile shape
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
from typing import Any, Mapping

import numpy as np
import zmq

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource
from vrstyle.transport import codec
from vrstyle.transport import protocol as P
from vrstyle.transport.jobs import Engine, Job, Outcome, cut_from_slot, process
from vrstyle.transport.security import HANDSHAKE_FAILURES, CurveKeys, check_handshake
from vrstyle.transport.shm import SegmentCache, host_id

log = logging.getLogger(__name__)

CUT_SHAPES_KEPT = 8
"""Tile sizes a worker keeps a reused cut arena for (a stream uses one or two)."""
CANCELS_KEPT = 4096
"""Cancelled request ids a worker remembers (a CANCEL may come after its request finished)."""


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
        self._cut_arenas: dict[tuple[int, ...], np.ndarray] = {}
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
        """An array of ``shape`` for tiles cut from a ring slot: the next ``shape[0]`` tiles of a
        reused arena for tiles of that size (``used`` counts those this batch took), so a
        batch's requests lie end to end and share a forward pass without a copy
        (:func:`~vrstyle.transport.jobs.process`). Compute thread only."""
        tile = shape[1:]
        if tile not in self._cut_arenas and len(self._cut_arenas) >= CUT_SHAPES_KEPT:
            self._cut_arenas.clear()  # a client changed its grid: forget old shapes
        arena = self._cut_arenas.get(tile)
        start = used[tile]
        used[tile] = stop = start + shape[0]
        if arena is None or len(arena) < stop:  # tiles already cut this batch keep the old one
            arena = self._cut_arenas[tile] = np.empty((max(stop, self.max_batch_tiles),) + tile, np.uint8)
        return arena[start:stop]

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
                                               outcome.infer_s * 1e6, outcome.pass_tiles,
                                               quality))
        return replies

