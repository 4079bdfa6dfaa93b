"""The broker: clients on one ROUTER, workers on another, requests routed by worker readiness.

Each worker announces a credit (how many requests it may hold) in READY; the broker keeps a
queue of requests ordered by deadline and hands each to the least-loaded worker that serves
its style and has credit left, preferring workers on the client's host (and giving
shared-memory requests only to those). Heartbeats go both ways (zguide "Paranoid Pirate"): a
worker silent for ``liveness`` intervals is dead, and each request it held goes to another
worker if its deadline still allows, else back to its client as LOST. Nothing is dropped
silently: malformed requests get an ERROR reply and are counted, expired ones a LOST reply, and
requests of a frame their client cancelled a LOST reply from here (queued) or from the worker
holding them (not started).

The broker touches headers only: payload parts are forwarded as received (zero-copy), with
the header rewritten to carry a broker-wide request id and the remaining deadline budget.

Length: just over 400 lines, as one state machine (clients, workers, the queue, liveness,
re-dispatch and cancellation all change the same tickets), the way zguide writes its brokers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource
from vrstyle.transport import protocol as P
from vrstyle.transport.security import HANDSHAKE_FAILURES, CurveKeys, handshake_failure, start_authenticator

log = logging.getLogger(__name__)

SERVICE_EMA = 0.2
"""Weight of the newest sample in a worker's running service time (for re-dispatch decisions)."""


@dataclass(eq=False)
class Ticket:
    """A client's request from its arrival to its reply: queued, held by a worker, perhaps
    re-dispatched (the protocol's :class:`~vrstyle.transport.protocol.Request` is the message)."""

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
    outstanding: dict[int, Ticket] = field(default_factory=dict)
    served: int = 0
    last_dispatch: float = 0.0
    service_s: float = 0.0

    def status(self) -> dict[str, Any]:
        return {"id": self.identity.hex(), "pid": self.pid, "host": self.host, "device": self.device,
                "styles": self.styles, "credit": self.credit, "outstanding": len(self.outstanding),
                "served": self.served}


class Broker(Resource):
    """Routes tile requests from clients to workers. Call :meth:`run`; stop it with the event.

    Args:
        client_endpoint: where clients connect (bound here).
        worker_endpoint: where workers connect (bound here).
        heartbeat_s, liveness: heartbeat interval, and silent intervals before a worker is dead.
        keys: CURVE server keys (``server_keys(DIR)``): both sockets then accept only
            authorised public keys. None: no encryption (loopback).
        max_queue: requests waiting for a worker beyond which new ones are refused (``Code.BUSY``).

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
        self.queue: list[Ticket] = []
        self._next_id = 1
        with self.building():
            if keys is not None:
                self.on_close(start_authenticator(self.context, keys).stop)
            self.client_socket = self._bind(client_endpoint, keys)
            self.worker_socket = self._bind(worker_endpoint, keys)
            self._monitors = {self._monitor(self.client_socket): "client", self._monitor(self.worker_socket): "worker"}
        self._curve = keys is not None
        self.client_endpoint = self.client_socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.worker_endpoint = self.worker_socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _bind(self, endpoint: str, keys: CurveKeys | None) -> zmq.Socket:
        socket = self.own(self.context.socket(zmq.ROUTER))
        socket.linger = 0
        socket.router_mandatory = True  # unroutable replies raise instead of vanishing
        socket.sndhwm = socket.rcvhwm = 0  # never drop a reply because a peer is slow to read
        socket.setsockopt(zmq.MAXMSGSIZE, P.MAX_SOCKET_MESSAGE_BYTES)
        if keys is not None:
            keys.apply(socket)
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as exc:
            raise VrstyleError(f"cannot listen on {endpoint}: {exc.strerror}") from None
        return socket

    def _monitor(self, socket: zmq.Socket) -> zmq.Socket:
        monitor = self.own(socket.get_monitor_socket(HANDSHAKE_FAILURES))
        self.on_close(socket.disable_monitor)
        return monitor

    def _log_refusals(self, monitor: zmq.Socket) -> None:
        """Say why a peer was refused (the peer hears it too, from its own monitor)."""
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            reason = handshake_failure(event, self._curve, "broker")
            if reason is not None:
                self.counters["refused_handshakes"] += 1
                log.warning("refused a %s on %s: %s", self._monitors[monitor], event["endpoint"].decode(), reason)

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set, then close."""
        stop = stop or threading.Event()
        poller = zmq.Poller()
        poller.register(self.client_socket, zmq.POLLIN)
        poller.register(self.worker_socket, zmq.POLLIN)
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_s
        log.info("broker: clients on %s, workers on %s", self.client_endpoint, self.worker_endpoint)
        try:
            while not stop.is_set():
                events = dict(poller.poll(timeout=1000 * min(self.heartbeat_s / 4, 0.25)))
                for monitor in self._monitors.keys() & events.keys():
                    self._log_refusals(monitor)
                if self.worker_socket in events:
                    while self.worker_socket.poll(0):
                        self._on_worker(self.worker_socket.recv_multipart(copy=False))
                if self.client_socket in events:
                    while self.client_socket.poll(0):
                        self._on_client(self.client_socket.recv_multipart(copy=False))
                now = time.monotonic()
                self._expire_workers(now)
                self._expire_queue(now)
                if now >= next_beat:
                    for worker in list(self.workers.values()):
                        self._to_worker(worker, [P.Header(P.Kind.HEARTBEAT).pack()])
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
                raise P.ProtocolError(P.Code.MALFORMED, "empty message")
            header = P.Header.unpack(parts[0].buffer)
            if header.kind == P.Kind.STATUS:
                self._to_client(identity, [P.Header(P.Kind.STATUS).pack(), P.encode_json(self.status())])
                return
            if header.kind == P.Kind.HEARTBEAT:
                self._to_client(identity, [P.Header(P.Kind.HEARTBEAT).pack()])
                return
            if header.kind == P.Kind.CANCEL:
                self._cancel(identity, header.frame_id)
                return
            if header.kind not in P.REQUESTS:
                raise P.ProtocolError(P.Code.KIND, f"clients may send STYLIZE, MEASURE, CANCEL or STATUS, not "
                                                   f"{header.kind.name}", header.request_id)
            request = P.parse_request(parts)
            self._check_route(header, request)
        except P.ProtocolError as exc:
            self.counters["rejected"] += 1
            self.counters[f"rejected_{exc.code.label}"] += 1
            log.info("rejected a message from client %s: %s", identity.hex(), exc)
            self._to_client(identity, P.error_frames(P.Kind.ERROR, exc.code, f"broker: {exc}", header))
            return
        self.counters["received"] += 1
        deadline = now + header.budget_us / 1e6 if header.budget_us else None
        self.queue.append(Ticket(self._next_id, identity, header, parts[1:], now, deadline))
        self._next_id += 1

    def _cancel(self, client: bytes, frame_id: int) -> None:
        """Withdraw a client's requests for a frame it no longer wants: queued ones come back LOST
        (cancelled) now; each worker holding one is told to skip it unless it has started."""

        def withdrawn(ticket: Ticket) -> bool:
            return ticket.client == client and ticket.header.frame_id == frame_id

        queued = [ticket for ticket in self.queue if withdrawn(ticket)]
        if queued:
            self.queue = [ticket for ticket in self.queue if not withdrawn(ticket)]
            self.counters["cancelled"] += len(queued)
            self.counters["cancelled_tiles"] += sum(ticket.header.count for ticket in queued)
            for ticket in queued:
                message = "broker: cancelled by the client before dispatch"
                self._to_client(client, P.error_frames(P.Kind.LOST, P.Code.CANCELLED, message, ticket.header))
        for worker in list(self.workers.values()):
            for ticket in [t for t in worker.outstanding.values() if withdrawn(t)]:
                self.counters["cancels_forwarded"] += 1
                self._to_worker(worker, [P.Header(P.Kind.CANCEL, request_id=ticket.id).pack()])

    def _check_route(self, header: P.Header, request: P.Request) -> None:
        """Refuse now what no connected worker could serve (an empty broker queues, workers may come)."""
        rid = header.request_id
        if len(self.queue) >= self.max_queue:
            raise P.ProtocolError(P.Code.BUSY, f"broker queue full ({self.max_queue} requests waiting)", rid)
        if not self.workers:
            return
        serving = [w for w in self.workers.values() if header.style in w.styles]
        if not serving:
            styles = sorted({s for w in self.workers.values() for s in w.styles})
            raise P.ProtocolError(P.Code.STYLE, f"no worker serves style {header.style!r} (served: "
                                                f"{', '.join(styles)})", rid)
        if request.stats is not None:
            channels = {w.styles[header.style] for w in serving}
            if request.stats.shape[1] not in channels:
                raise P.ProtocolError(P.Code.STATS, f"statistics for {request.stats.shape[1]} channels, style "
                                                    f"{header.style!r} has {min(channels)}", rid)
        if header.flags & P.FLAG_SHM and not any(w.host == header.host for w in serving):
            raise P.ProtocolError(P.Code.NO_LOCAL_WORKER, "shared-memory request but no worker on the client's host "
                                                          f"serves style {header.style!r}", rid)

    def _to_client(self, identity: bytes, frames: list) -> None:
        try:
            self.client_socket.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:  # the client has gone: nobody left to tell
            self.counters["unroutable"] += 1
            log.debug("reply to vanished client %s dropped: %s", identity.hex(), exc.strerror)

    def _lost(self, ticket: Ticket, code: P.Code, message: str) -> None:
        self.counters["lost"] += 1
        self._to_client(ticket.client, P.error_frames(P.Kind.LOST, code, f"broker: {message}", ticket.header))

    # Workers.

    def _on_worker(self, frames: list) -> None:
        identity, parts = bytes(frames[0]), frames[1:]
        now = time.monotonic()
        try:
            if not parts:
                raise P.ProtocolError(P.Code.MALFORMED, "empty message")
            header = P.Header.unpack(parts[0].buffer)
            worker = self.workers.get(identity)
            if header.kind == P.Kind.READY:
                if len(parts) != 2:
                    raise P.ProtocolError(P.Code.MALFORMED, f"READY has {len(parts)} parts, expected 2")
                self._register(identity, P.parse_worker_info(parts[1]), now)
                return
            if worker is None:  # declared dead, or the broker restarted: ask it to announce itself
                self.counters["unknown_worker_messages"] += 1
                self._send_worker(identity, [P.Header(P.Kind.RECONNECT).pack()])
                return
            worker.expiry = now + self.liveness * self.heartbeat_s
            if header.kind == P.Kind.HEARTBEAT:
                return
            if header.kind == P.Kind.DISCONNECT:
                log.info("worker %s (pid %d) left", identity.hex(), worker.pid)
                self.counters["workers_left"] += 1
                self._remove(worker, now)
                return
            if header.kind not in (P.Kind.RESULT, P.Kind.ERROR, P.Kind.LOST):
                raise P.ProtocolError(P.Code.KIND, f"workers may not send {header.kind.name}")
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
        ticket = worker.outstanding.pop(header.request_id, None)
        if ticket is None:
            self.counters["stray_replies"] += 1
            return
        worker.served += 1
        elapsed = now - ticket.dispatched
        worker.service_s = elapsed if not worker.service_s else (1 - SERVICE_EMA) * worker.service_s + SERVICE_EMA * elapsed
        flags = header.flags | (P.FLAG_REDISPATCHED if ticket.redispatched else 0)
        queue_us = header.queue_us + (ticket.dispatched - ticket.received) * 1e6
        restored = replace(header, request_id=ticket.header.request_id, flags=flags,
                           queue_us=min(int(queue_us), 2**32 - 1))
        if header.kind == P.Kind.RESULT:
            self.counters["results"] += 1
        elif header.kind == P.Kind.LOST and header.code == P.Code.CANCELLED:
            self.counters["cancelled_by_workers"] += 1
        else:
            self.counters["worker_errors"] += 1
        self._to_client(ticket.client, [restored.pack(), *parts[1:]])

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
        for ticket in worker.outstanding.values():
            if ticket.deadline is None or ticket.deadline - now > worker.service_s:
                ticket.redispatched = True
                retry.append(ticket)
                self.counters["redispatched"] += 1
            else:
                self._lost(ticket, P.Code.WORKER_DIED, f"worker pid {worker.pid} died and no other could finish "
                                                       "before the deadline")
        worker.outstanding = {}
        self.queue[:0] = retry

    def _expire_queue(self, now: float) -> None:
        expired = [ticket for ticket in self.queue if ticket.deadline is not None and now > ticket.deadline]
        if expired:
            self.queue = [ticket for ticket in self.queue if ticket.deadline is None or now <= ticket.deadline]
            self.counters["expired"] += len(expired)
            for ticket in expired:
                self._lost(ticket, P.Code.EXPIRED, "deadline passed while waiting for a worker")

    def _dispatch(self) -> None:
        """Hand queued requests, earliest deadline first, to workers with credit left."""
        if not self.queue or not self.workers:
            return
        pending = sorted(self.queue, key=lambda ticket: (ticket.deadline is None, ticket.deadline or 0.0, ticket.id))
        self.queue = []
        for ticket in pending:
            worker = self._pick(ticket)
            if worker is None:
                if self._stranded(ticket):
                    message = "broker: no worker on the client's host is left for this shared-memory request"
                    self._to_client(ticket.client, P.error_frames(P.Kind.ERROR, P.Code.NO_LOCAL_WORKER, message,
                                                                  ticket.header))
                else:
                    self.queue.append(ticket)
                continue
            now = time.monotonic()
            budget = 0 if ticket.deadline is None else max(int((ticket.deadline - now) * 1e6), 1)
            header = replace(ticket.header, request_id=ticket.id, budget_us=budget)
            ticket.dispatched = worker.last_dispatch = now
            worker.outstanding[ticket.id] = ticket
            self.counters["dispatched"] += 1
            self._to_worker(worker, [header.pack(), *ticket.parts])  # a failure puts the ticket back in the queue

    def _stranded(self, ticket: Ticket) -> bool:
        """A shared-memory request that only workers on other hosts could now serve."""
        header = ticket.header
        serving = [w for w in self.workers.values() if header.style in w.styles]
        return bool(header.flags & P.FLAG_SHM and serving and all(w.host != header.host for w in serving))

    def _pick(self, ticket: Ticket) -> Worker | None:
        header = ticket.header
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
            self.worker_socket.send_multipart([identity, *frames], copy=False)
            return True
        except zmq.ZMQError as exc:
            log.warning("worker %s unreachable: %s", identity.hex(), exc.strerror)
            return False

    def status(self) -> dict[str, Any]:
        """Workers, queue length and counters (the STATUS reply)."""
        return {"workers": [w.status() for w in self.workers.values()], "queued": len(self.queue),
                "counters": dict(self.counters)}
