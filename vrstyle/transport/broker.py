"""The broker: clients on one ROUTER, workers on another, requests routed by worker readiness.

Each worker announces a credit (how many requests it may hold) in READY; the broker keeps a
queue of requests ordered by deadline and hands each to the least-loaded worker that serves
its style and has credit left, preferring workers on the client's host (and giving
shared-memory requests only to those). Heartbeats go both ways (zguide "Paranoid Pirate"): a
worker silent for ``liveness`` intervals is dead, and each request it held goes to another
worker if its deadline still allows, else back to its client as LOST. Nothing is dropped
silently: malformed requests get an ERROR reply and are counted, expired ones a LOST reply.

The broker touches headers only: payload parts are forwarded as received (zero-copy), with
the header rewritten to carry a broker-wide request id and the remaining deadline budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import zmq

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.transport import protocol as P
from vrstyle.transport.security import CurveKeys, start_authenticator

log = logging.getLogger(__name__)

SERVICE_EMA = 0.2
"""Weight of the newest sample in a worker's running service time (for re-dispatch decisions)."""


@dataclass(eq=False)
class Job:
    """A request between its arrival and its reply."""

    id: int
    client: bytes
    header: P.Header
    parts: list
    received: float
    deadline: float | None
    redispatched: bool = False
    dispatched: float = 0.0


@dataclass(eq=False)
class Worker:
    identity: bytes
    styles: dict[str, int]
    host: int
    device: str
    credit: int
    pid: int
    expiry: float
    outstanding: dict[int, Job] = field(default_factory=dict)
    served: int = 0
    last_dispatch: float = 0.0
    service_s: float = 0.0

    def status(self) -> dict[str, Any]:
        return {"id": self.identity.hex(), "pid": self.pid, "host": self.host, "device": self.device,
                "styles": self.styles, "credit": self.credit, "outstanding": len(self.outstanding),
                "served": self.served}


class Broker:
    """Routes tile requests from clients to workers. Call :meth:`run`; stop it with the event.

    Args:
        client_endpoint: where clients connect (bound here).
        worker_endpoint: where workers connect (bound here).
        heartbeat_s, liveness: heartbeat interval, and silent intervals before a worker is dead.
        keys: CURVE server keys (``server_keys(DIR)``): both sockets then accept only
            authorised public keys. None: no encryption (loopback).
        max_queue: requests waiting for a worker beyond which new ones are refused (E_BUSY).

    Raises:
        VrstyleError: an endpoint cannot be bound.
    """

    def __init__(self, client_endpoint: str = settings.BROKER_CLIENTS, worker_endpoint: str = settings.BROKER_WORKERS,
                 *, heartbeat_s: float = P.HEARTBEAT_INTERVAL_S, liveness: int = P.HEARTBEAT_LIVENESS,
                 keys: CurveKeys | None = None, max_queue: int = settings.BROKER_MAX_QUEUE,
                 context: zmq.Context | None = None):
        self.heartbeat_s, self.liveness, self.max_queue = heartbeat_s, liveness, max_queue
        self.context = context or zmq.Context.instance()
        self.counters: Counter[str] = Counter()
        self.workers: dict[bytes, Worker] = {}
        self.queue: list[Job] = []
        self._next_id = 1
        self._auth = start_authenticator(self.context, keys) if keys is not None else None
        try:
            self.clients = self._bind(client_endpoint, keys)
            self.backend = self._bind(worker_endpoint, keys)
        except VrstyleError:
            self.close()
            raise
        self.client_endpoint = self.clients.getsockopt_string(zmq.LAST_ENDPOINT)
        self.worker_endpoint = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)

    def _bind(self, endpoint: str, keys: CurveKeys | None) -> zmq.Socket:
        socket = self.context.socket(zmq.ROUTER)
        socket.linger = 0
        socket.router_mandatory = True  # unroutable replies raise instead of vanishing
        socket.sndhwm = socket.rcvhwm = 0  # never drop a reply because a peer is slow to read
        socket.setsockopt(zmq.MAXMSGSIZE, P.MAX_SOCKET_MESSAGE_BYTES)
        if keys is not None:
            keys.apply(socket)
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as exc:
            socket.close()
            raise VrstyleError(f"cannot listen on {endpoint}: {exc.strerror}") from None
        return socket

    def close(self) -> None:
        for name in ("clients", "backend"):
            socket = getattr(self, name, None)
            if socket is not None:
                socket.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set (then close the sockets)."""
        stop = stop or threading.Event()
        poller = zmq.Poller()
        poller.register(self.clients, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_s
        log.info("broker: clients on %s, workers on %s", self.client_endpoint, self.worker_endpoint)
        try:
            while not stop.is_set():
                events = dict(poller.poll(timeout=1000 * min(self.heartbeat_s / 4, 0.25)))
                if self.backend in events:
                    while self.backend.poll(0):
                        self._on_worker(self.backend.recv_multipart(copy=False))
                if self.clients in events:
                    while self.clients.poll(0):
                        self._on_client(self.clients.recv_multipart(copy=False))
                now = time.monotonic()
                self._expire_workers(now)
                self._expire_queue(now)
                if now >= next_beat:
                    for worker in list(self.workers.values()):
                        self._to_worker(worker, [P.Header(P.HEARTBEAT).pack()])
                    next_beat = now + self.heartbeat_s
                self._dispatch()
        finally:
            self.close()

    # Clients.

    def _on_client(self, frames: list) -> None:
        identity, parts = bytes(frames[0]), frames[1:]
        now = time.monotonic()
        header = None
        try:
            if not parts:
                raise P.ProtocolError(P.E_MALFORMED, "empty message")
            header = P.Header.unpack(parts[0].buffer)
            if header.kind == P.STATUS:
                self._to_client(identity, [P.Header(P.STATUS).pack(), P.encode_json(self.status())])
                return
            if header.kind == P.HEARTBEAT:
                self._to_client(identity, [P.Header(P.HEARTBEAT).pack()])
                return
            if header.kind not in P.REQUESTS:
                raise P.ProtocolError(P.E_KIND, f"clients may send STYLIZE, MEASURE or STATUS, not "
                                                f"{header.kind_name}", header.request_id)
            request = P.parse_request(parts)
            self._check_route(header, request)
        except P.ProtocolError as exc:
            self.counters["rejected"] += 1
            self.counters[f"rejected_{P.CODE_NAMES.get(exc.code, exc.code)}"] += 1
            log.info("rejected a message from client %s: %s", identity.hex(), exc)
            self._to_client(identity, P.error_frames(P.ERROR, exc.code, f"broker: {exc}", header))
            return
        self.counters["received"] += 1
        deadline = now + header.budget_us / 1e6 if header.budget_us else None
        self.queue.append(Job(self._next_id, identity, header, parts[1:], now, deadline))
        self._next_id += 1

    def _check_route(self, header: P.Header, request: P.Request) -> None:
        """Refuse now what no connected worker could serve (an empty broker queues, workers may come)."""
        rid = header.request_id
        if len(self.queue) >= self.max_queue:
            raise P.ProtocolError(P.E_BUSY, f"broker queue full ({self.max_queue} requests waiting)", rid)
        if not self.workers:
            return
        serving = [w for w in self.workers.values() if header.style in w.styles]
        if not serving:
            styles = sorted({s for w in self.workers.values() for s in w.styles})
            raise P.ProtocolError(P.E_STYLE, f"no worker serves style {header.style!r} (served: "
                                             f"{', '.join(styles)})", rid)
        if request.stats is not None:
            channels = {w.styles[header.style] for w in serving}
            if request.stats.shape[1] not in channels:
                raise P.ProtocolError(P.E_STATS, f"statistics for {request.stats.shape[1]} channels, style "
                                                 f"{header.style!r} has {min(channels)}", rid)
        if header.flags & P.FLAG_SHM and not any(w.host == header.host for w in serving):
            raise P.ProtocolError(P.E_NO_LOCAL_WORKER, "shared-memory request but no worker on the client's host "
                                                       f"serves style {header.style!r}", rid)

    def _to_client(self, identity: bytes, frames: list) -> None:
        try:
            self.clients.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:  # the client has gone: nobody left to tell
            self.counters["unroutable"] += 1
            log.debug("reply to vanished client %s dropped: %s", identity.hex(), exc.strerror)

    def _lost(self, job: Job, code: int, message: str) -> None:
        self.counters["lost"] += 1
        self._to_client(job.client, P.error_frames(P.LOST, code, f"broker: {message}", job.header))

    # Workers.

    def _on_worker(self, frames: list) -> None:
        identity, parts = bytes(frames[0]), frames[1:]
        now = time.monotonic()
        try:
            if not parts:
                raise P.ProtocolError(P.E_MALFORMED, "empty message")
            header = P.Header.unpack(parts[0].buffer)
            worker = self.workers.get(identity)
            if header.kind == P.READY:
                if len(parts) != 2:
                    raise P.ProtocolError(P.E_MALFORMED, f"READY has {len(parts)} parts, expected 2")
                self._register(identity, P.parse_worker_info(parts[1]), now)
                return
            if worker is None:  # declared dead, or the broker restarted: ask it to announce itself
                self.counters["unknown_worker_messages"] += 1
                self._send_worker(identity, [P.Header(P.RECONNECT).pack()])
                return
            worker.expiry = now + self.liveness * self.heartbeat_s
            if header.kind == P.HEARTBEAT:
                return
            if header.kind == P.DISCONNECT:
                log.info("worker %s (pid %d) left", identity.hex(), worker.pid)
                self.counters["workers_left"] += 1
                self._remove(worker, now)
                return
            if header.kind not in (P.RESULT, P.ERROR, P.LOST):
                raise P.ProtocolError(P.E_KIND, f"workers may not send {header.kind_name}")
            self._on_reply(worker, header, parts, now)
        except P.ProtocolError as exc:
            self.counters["worker_protocol_errors"] += 1
            log.warning("bad message from worker %s: %s", identity.hex(), exc)

    def _register(self, identity: bytes, info: dict[str, Any], now: float) -> None:
        known = self.workers.get(identity)
        worker = Worker(identity, info["styles"], info["host"], info["device"], info["credit"], info["pid"],
                        now + self.liveness * self.heartbeat_s)
        if known is not None:  # announced again after a reconnect: what it held is gone
            worker.outstanding, worker.served = known.outstanding, known.served
            self._redispatch(worker, now)
        self.workers[identity] = worker
        self.counters["workers_joined"] += 1
        log.info("worker %s ready: pid %d on %s, styles %s, credit %d", identity.hex(), worker.pid, worker.device,
                 ", ".join(worker.styles), worker.credit)

    def _on_reply(self, worker: Worker, header: P.Header, parts: list, now: float) -> None:
        job = worker.outstanding.pop(header.request_id, None)
        if job is None:
            self.counters["stray_replies"] += 1
            return
        worker.served += 1
        elapsed = now - job.dispatched
        worker.service_s = elapsed if not worker.service_s else (1 - SERVICE_EMA) * worker.service_s + SERVICE_EMA * elapsed
        flags = header.flags | (P.FLAG_REDISPATCHED if job.redispatched else 0)
        queue_us = header.queue_us + (job.dispatched - job.received) * 1e6
        restored = replace(header, request_id=job.header.request_id, flags=flags,
                           queue_us=min(int(queue_us), 2**32 - 1))
        self.counters["results" if header.kind == P.RESULT else "worker_errors"] += 1
        self._to_client(job.client, [restored.pack(), *parts[1:]])

    def _expire_workers(self, now: float) -> None:
        for worker in [w for w in self.workers.values() if now > w.expiry]:
            log.warning("worker %s (pid %d) silent for %.1f s: presumed dead", worker.identity.hex(), worker.pid,
                        self.liveness * self.heartbeat_s)
            self.counters["workers_died"] += 1
            self._remove(worker, now)

    def _remove(self, worker: Worker, now: float) -> None:
        self.workers.pop(worker.identity, None)
        self._redispatch(worker, now)

    def _redispatch(self, worker: Worker, now: float) -> None:
        """Send a lost worker's requests elsewhere if their deadlines allow, else report them LOST."""
        retry = []
        for job in worker.outstanding.values():
            if job.deadline is None or job.deadline - now > worker.service_s:
                job.redispatched = True
                retry.append(job)
                self.counters["redispatched"] += 1
            else:
                self._lost(job, P.LOST_WORKER_DIED, f"worker pid {worker.pid} died and no other could finish "
                                                    "before the deadline")
        worker.outstanding = {}
        self.queue[:0] = retry

    def _expire_queue(self, now: float) -> None:
        expired = [job for job in self.queue if job.deadline is not None and now > job.deadline]
        if expired:
            self.queue = [job for job in self.queue if job.deadline is None or now <= job.deadline]
            self.counters["expired"] += len(expired)
            for job in expired:
                self._lost(job, P.LOST_EXPIRED, "deadline passed while waiting for a worker")

    def _dispatch(self) -> None:
        """Hand queued requests, earliest deadline first, to workers with credit left."""
        if not self.queue or not self.workers:
            return
        pending = sorted(self.queue, key=lambda job: (job.deadline is None, job.deadline or 0.0, job.id))
        self.queue = []
        for job in pending:
            worker = self._pick(job)
            if worker is None:
                if self._stranded(job):
                    self._to_client(job.client, P.error_frames(P.ERROR, P.E_NO_LOCAL_WORKER, "broker: no worker on "
                                                               "the client's host is left for this shared-memory "
                                                               "request", job.header))
                else:
                    self.queue.append(job)
                continue
            now = time.monotonic()
            budget = 0 if job.deadline is None else max(int((job.deadline - now) * 1e6), 1)
            header = replace(job.header, request_id=job.id, budget_us=budget)
            job.dispatched = worker.last_dispatch = now
            worker.outstanding[job.id] = job
            self.counters["dispatched"] += 1
            self._to_worker(worker, [header.pack(), *job.parts])  # a failure puts the job back in the queue

    def _stranded(self, job: Job) -> bool:
        """A shared-memory request that only workers on other hosts could now serve."""
        header = job.header
        serving = [w for w in self.workers.values() if header.style in w.styles]
        return bool(header.flags & P.FLAG_SHM and serving and all(w.host != header.host for w in serving))

    def _pick(self, job: Job) -> Worker | None:
        header = job.header
        shm = bool(header.flags & P.FLAG_SHM)
        best, best_key = None, None
        for worker in self.workers.values():
            if header.style not in worker.styles or len(worker.outstanding) >= worker.credit:
                continue
            if shm and worker.host != header.host:
                continue
            key = (worker.host != header.host, len(worker.outstanding) / worker.credit, worker.last_dispatch)
            if best_key is None or key < best_key:
                best, best_key = worker, key
        return best

    def _to_worker(self, worker: Worker, frames: list) -> None:
        if not self._send_worker(worker.identity, frames):
            self.counters["workers_died"] += 1
            self._remove(worker, time.monotonic())

    def _send_worker(self, identity: bytes, frames: list) -> bool:
        try:
            self.backend.send_multipart([identity, *frames], copy=False)
            return True
        except zmq.ZMQError as exc:
            log.warning("worker %s unreachable: %s", identity.hex(), exc.strerror)
            return False

    def status(self) -> dict[str, Any]:
        """Workers, queue length and counters (the STATUS reply)."""
        return {"workers": [w.status() for w in self.workers.values()], "queued": len(self.queue),
                "counters": dict(self.counters)}
