"""The client side of the transport: submit tile batches to a broker, poll for replies.

:class:`TransportClient` is one DEALER socket and is used from one thread (any one). It
implements the backend interface of :mod:`vrstyle.backend` (``submit``, ``poll``,
``pending``, ``status``, ``close``), like :class:`~vrstyle.transport.local.LocalBackend`.

Payloads go one of three ways (``payload=``): ``"copy"`` (pyzmq copies the tiles into the
message), ``"zerocopy"`` (libzmq sends straight from the numpy buffer) or ``"shm"`` (tiles
and results in shared memory, only descriptors on the socket; same host only). ``"auto"``
uses shared memory for a style when every worker serving it shares this host, else
zero-copy, and re-checks with each heartbeat; a shared-memory request that no local worker
can take comes back as ``Code.NO_LOCAL_WORKER`` and is resent by copy, transparently. Tiles
sent as pixels are compressed per link (``compress=``, :mod:`vrstyle.transport.codec`): ``auto``
uses JPEG where a worker of the style is on another host, ``zstd`` is lossless.
Streams go faster still through a :meth:`TransportClient.frame_ring`: each frame is copied
once into a ring slot and :meth:`TransportClient.submit_frame` names tiles by index.

Heartbeats: while requests are outstanding the client asks for the broker's STATUS every
interval; a broker silent for ``liveness`` intervals means every outstanding request is
returned LOST (``broker-gone``), never left hanging.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zmq

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource
from vrstyle.transport import codec
from vrstyle.transport import protocol as P
from vrstyle.transport import shm
from vrstyle.transport.security import HANDSHAKE_FAILURES, CurveKeys, check_handshake

log = logging.getLogger(__name__)

PAYLOADS = ("auto", "shm", "zerocopy", "copy")


@dataclass
class _Pending:
    batch: P.TileBatch | P.FrameBatch
    header: P.Header
    sent: float
    block: shm.Block | None


class TransportClient(Resource):
    """Talks to a broker: tile batches out, :class:`~vrstyle.transport.protocol.Reply` objects back.

    Args:
        endpoint: the broker's client endpoint.
        keys: CURVE keys (``peer_keys(DIR, "client")``) for a broker started with ``--curve``.
        payload: "auto", "shm", "zerocopy" or "copy" (see the module docstring).
        heartbeat_s, liveness: heartbeat interval and silent intervals before the broker is gone.

    >>> client = TransportClient("tcp://127.0.0.1:1", payload="copy")
    >>> client.pending
    0
    >>> client.close()
    """

    def __init__(self, endpoint: str = settings.BROKER_CLIENTS, *, keys: CurveKeys | None = None,
                 payload: str = "auto", compress: str = "auto", quality: int = codec.QUALITY,
                 heartbeat_s: float = P.HEARTBEAT_INTERVAL_S, liveness: int = P.HEARTBEAT_LIVENESS,
                 context: zmq.Context | None = None):
        if payload not in PAYLOADS:
            raise VrstyleError(f"unknown payload mode {payload!r}; choose one of {', '.join(PAYLOADS)}")
        if compress not in codec.CODECS:
            raise VrstyleError(f"unknown codec {compress!r}; choose one of {', '.join(codec.CODECS)}")
        if not 1 <= quality <= 100:
            raise VrstyleError(f"JPEG quality must be 1..100, got {quality}")
        self.compress, self.quality = compress, quality
        if payload == "shm" and not shm.available():
            raise VrstyleError("shared memory is not available on this host (no /dev/shm)")
        self.endpoint, self.payload = endpoint, payload
        self.heartbeat_s, self.liveness = heartbeat_s, liveness
        self.context = context or zmq.Context.instance()
        self.host = shm.host_id()
        self.counters: dict[str, int] = {"sent": 0, "unsent": 0, "stray_replies": 0, "resent_by_copy": 0,
                                         "cancels_sent": 0, "pixel_bytes_sent": 0, "pixel_bytes_received": 0}
        self._pending: dict[int, _Pending] = {}
        self._ready: list[P.Reply] = []
        self._next_id = 1
        self._status: dict[str, Any] | None = None
        self._status_asked = 0.0
        self._heard = time.monotonic()
        self._poller = zmq.Poller()
        self._monitor = None
        with self.building():
            self._blocks = self.own(shm.BlockPool()) if payload in ("auto", "shm") and shm.available() else None
            self._socket = self.own(self.context.socket(zmq.DEALER))
            self._socket.linger = 0
            self._socket.sndhwm = self._socket.rcvhwm = 0
            # A DEALER with no connected peer blocks in send (e.g. while a refused CURVE handshake
            # is retried): give up after a heartbeat instead; what was not sent is then answered
            # LOST once the broker has been silent too long, like any other unanswered request.
            self._socket.sndtimeo = max(1, int(1000 * heartbeat_s))
            self._poller.register(self._socket, zmq.POLLIN)
            if keys is not None:
                keys.apply(self._socket)
            self._curve = keys is not None
            self._monitor = self.own(self._socket.get_monitor_socket(HANDSHAKE_FAILURES))  # refusals, said at once
            self.on_close(self._socket.disable_monitor)
            self._poller.register(self._monitor, zmq.POLLIN)
            try:
                self._socket.connect(endpoint)
            except zmq.ZMQError as exc:
                raise VrstyleError(f"cannot connect to broker at {endpoint}: {exc.strerror}") from None

    # The backend interface.

    @property
    def pending(self) -> int:
        """Requests submitted and not yet answered."""
        return len(self._pending)

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        """The broker's state (workers with their styles and hosts, queue, counters).

        Raises:
            VrstyleError: no answer within ``timeout`` (default
                :data:`~vrstyle.settings.CONNECT_TIMEOUT_S`), or the broker refused our keys.
        """
        timeout = settings.CONNECT_TIMEOUT_S if timeout is None else timeout
        self._status = None
        self._ask_status()
        until = time.monotonic() + timeout
        while self._status is None:
            remaining = until - time.monotonic()
            if remaining <= 0:
                raise VrstyleError(f"no answer from the broker at {self.endpoint} within {timeout:g} s "
                                   "(is `vrstyle broker` running there?)")
            self._receive(remaining)
        return self._status

    def submit(self, batch: P.TileBatch) -> int:
        """Send a batch; its :class:`Reply` comes from :meth:`poll` later.

        Returns:
            The request id (echoed in the reply).

        Raises:
            ValueError (ProtocolError): the batch breaks the protocol's limits.
            VrstyleError: ``payload="auto"`` and the broker does not answer a first STATUS.
        """
        tiles = batch.tiles
        if not isinstance(tiles, np.ndarray) or tiles.dtype != np.uint8 or tiles.ndim != 4:
            got = f"{getattr(tiles, 'shape', '?')} {getattr(tiles, 'dtype', type(tiles))}"
            raise P.ProtocolError(P.Code.DTYPE, f"tiles must be a (count, height, width, 3|4) uint8 array, got {got}")
        use_shm = self._mode(batch.style) == "shm"
        pending = self._register(batch, batch.header(self._next_id, self.host, shm=use_shm))
        self._send(pending, use_shm)
        return pending.header.request_id

    def _register(self, batch: P.TileBatch | P.FrameBatch, header: P.Header) -> _Pending:
        """A checked request, outstanding under ``header.request_id`` (the next id) from now."""
        P.check_request_header(header)
        header.pack()  # raises for a style name too long for the header
        self._next_id += 1
        pending = _Pending(batch, header, time.monotonic(), None)
        if not self._pending:
            self._heard = pending.sent  # the silence clock starts with the first outstanding request
        self._pending[header.request_id] = pending
        return pending

    def frame_ring(self, style: str, spec: P.FrameSpec, channels: int, slots: int) -> shm.FrameRing | None:
        """A ring of frame slots for :meth:`submit_frame`, or None where the fast path cannot
        serve ``style`` (a payload other than auto/shm, no shared memory, or a worker of the
        style on another host)."""
        if self._blocks is None or self._mode(style) != "shm":
            return None
        return shm.FrameRing(self._blocks, spec, channels, slots)

    def submit_frame(self, batch: P.FrameBatch, ring: shm.FrameRing, slot: int) -> int:
        """Send tiles of the frame in ``ring``'s ``slot`` by index; the worker writes their results
        into the slot's output, and the :class:`Reply` carries no tiles. Returns the request id."""
        header = self._register(batch, batch.header(self._next_id, self.host)).header
        budget = 0 if batch.deadline_s is None else max(int(batch.deadline_s * 1e6), 1)
        frames = P.request_frames(replace(header, budget_us=budget), None, batch.stats,
                                  ring.blocks[slot].descriptor(), frame=batch.spec)
        if self._send_frames(frames):
            self.counters["sent"] += 1
        return header.request_id

    def cancel(self, frame_id: int) -> None:
        """Withdraw this client's requests for ``frame_id`` (superseded or past its deadline):
        the broker drops those still queued and workers skip those they have not started; each
        still comes back, LOST with ``Code.CANCELLED``, unless it was already done."""
        if any(p.batch.frame_id == frame_id for p in self._pending.values()) \
                and self._send_frames([P.Header(P.Kind.CANCEL, frame_id=frame_id).pack()]):
            self.counters["cancels_sent"] += 1

    def poll(self, timeout: float = 0.0) -> list[P.Reply]:
        """Replies that have arrived, waiting up to ``timeout`` s for the first one.

        Raises:
            VrstyleError: the broker refused this client's CURVE key.
        """
        until = time.monotonic() + timeout
        while True:
            remaining = max(until - time.monotonic(), 0.0)
            self._receive(remaining)
            if self._ready or remaining == 0.0:
                break
        ready, self._ready = self._ready, []
        return ready

    # Sending.

    def _mode(self, style: str) -> str:
        if self.payload != "auto":
            return self.payload
        if self._blocks is None:
            return "zerocopy"
        if self._status is None:
            self.status()
        serving = [w for w in self._status["workers"] if style in w["styles"]]
        local = bool(serving) and all(w["host"] == self.host for w in serving)
        return "shm" if local else "zerocopy"

    def _codec(self, style: str) -> str:
        """How tiles of ``style`` sent as pixels are compressed: as asked, or with ``auto`` JPEG
        when a worker serving it is on another host (a network link), else not at all (also
        while the broker's first status has not arrived; it is asked every heartbeat)."""
        if self.compress != "auto":
            return self.compress
        if self._status is None:
            return "none"
        remote = any(w["host"] != self.host for w in self._status["workers"] if style in w["styles"])
        return "jpeg" if remote else "none"

    def _send(self, pending: _Pending, use_shm: bool) -> None:
        batch, header = pending.batch, pending.header
        budget = 0
        if batch.deadline_s is not None:
            budget = max(int((batch.deadline_s - (time.monotonic() - pending.sent)) * 1e6), 1)
        flags = (header.flags & ~P.FLAG_SHM) | (P.FLAG_SHM if use_shm else 0)
        header = pending.header = replace(header, budget_us=budget, flags=flags)
        if use_shm:
            out_bytes = int(np.prod(header.out_shape)) if header.kind == P.Kind.STYLIZE else 0
            if pending.block is None:
                pending.block = self._blocks.acquire(batch.tiles.nbytes, out_bytes)
                pending.block.input(batch.tiles.shape)[...] = batch.tiles
            frames = P.request_frames(header, None, batch.stats, pending.block.descriptor(), batch.bounds)
        elif (compress := self._codec(batch.style)) != "none":
            tiles = batch.tiles[..., :3] if compress == "jpeg" else batch.tiles
            coded = codec.encode(tiles, compress, self.quality)
            header = pending.header = replace(header, flags=header.flags | P.CODEC_FLAGS[compress],
                                              channels=tiles.shape[-1])
            frames = P.request_frames(header, None, batch.stats, None, batch.bounds, coded=coded)
            self.counters["pixel_bytes_sent"] += len(coded[1])
        else:
            frames = P.request_frames(header, np.ascontiguousarray(batch.tiles), batch.stats, None, batch.bounds)
            self.counters["pixel_bytes_sent"] += batch.tiles.nbytes
        if self._send_frames(frames, copy=self.payload == "copy"):
            self.counters["sent"] += 1

    def _ask_status(self) -> None:
        self._send_frames([P.Header(P.Kind.STATUS).pack()])
        self._status_asked = time.monotonic()

    def _send_frames(self, frames: list, copy: bool = True) -> bool:
        try:
            self._socket.send_multipart(frames, copy=copy)
        except zmq.Again:
            self.counters["unsent"] += 1
            log.info("no connection to the broker at %s: a message was not sent", self.endpoint)
            return False
        return True

    # Receiving.

    def _receive(self, timeout: float) -> None:
        """Handle what arrives within ``timeout`` (at most a heartbeat interval, so heartbeats go out on time)."""
        events = dict(self._poller.poll(timeout=int(1000 * min(timeout, self.heartbeat_s))))
        if self._monitor in events:
            check_handshake(self._monitor, self._curve, self.endpoint)
        if self._socket in events:
            while self._socket.poll(0):
                self._on_message(self._socket.recv_multipart(copy=False))
        self._keep_alive()

    def _keep_alive(self) -> None:
        now = time.monotonic()
        if not self._pending:
            return
        if now - self._heard > self.liveness * self.heartbeat_s:
            log.warning("broker at %s silent for %.1f s: %d request(s) lost", self.endpoint, now - self._heard,
                        len(self._pending))
            for rid in list(self._pending):
                self._finish(rid, P.Reply(rid, P.Status.LOST, code=P.Code.BROKER_GONE,
                                          message=f"broker at {self.endpoint} stopped answering"), retire=True)
            self._heard = now
        elif now - self._status_asked > self.heartbeat_s:
            self._ask_status()

    def _on_message(self, frames: list) -> None:
        self._heard = time.monotonic()
        try:
            header = P.Header.unpack(frames[0].buffer)
            if header.kind == P.Kind.STATUS:
                self._status = P.decode_json(frames[1]) if len(frames) == 2 else None
            elif header.kind == P.Kind.RESULT:
                self._on_result(header, frames)
            elif header.kind in (P.Kind.ERROR, P.Kind.LOST):
                self._on_failure(header, P.parse_text(frames[1]) if len(frames) > 1 else "")
        except P.ProtocolError as exc:
            log.warning("malformed reply from the broker ignored: %s", exc)

    def _on_result(self, header: P.Header, frames: list) -> None:
        rid = header.request_id
        pending = self._pending.get(rid)
        if pending is None:
            self.counters["stray_replies"] += 1
            return
        try:
            tiles, moments = P.parse_result(header, frames, pending.header)
        except P.ProtocolError as exc:
            reply = P.Reply(rid, P.Status.ERROR, pending.batch.frame_id, pending.batch.first_tile,
                            pending.header.count, code=exc.code, message=f"malformed result: {exc}")
            self._finish(rid, reply, retire=True)
            return
        if pending.header.kind == P.Kind.STYLIZE:
            self.counters["pixel_bytes_received"] += sum(len(part) for part in frames[1:-1])
            tiles = self._deliver(pending, tiles)
        reply = P.Reply(rid, P.Status.OK, pending.batch.frame_id, pending.batch.first_tile, pending.header.count,
                        tiles, moments.copy(), queue_s=header.queue_us / 1e6, infer_s=header.infer_us / 1e6,
                        round_trip_s=time.monotonic() - pending.sent,
                        redispatched=bool(header.flags & P.FLAG_REDISPATCHED),
                        pass_share=header.count / max(header.pass_tiles, header.count, 1))
        self._finish(rid, reply, retire=reply.redispatched)

    def _deliver(self, pending: _Pending, tiles: np.ndarray | None) -> np.ndarray | None:
        """The result tiles in ``batch.out`` if given; shared memory is copied out (the block is reused).
        A frame request's results are in its ring slot already: None."""
        if isinstance(pending.batch, P.FrameBatch):
            return None
        source = pending.block.output(pending.header.out_shape) if tiles is None else tiles
        if pending.batch.out is not None:
            pending.batch.out[...] = source
            return pending.batch.out
        return source.copy() if tiles is None else source

    def _on_failure(self, header: P.Header, message: str) -> None:
        rid = header.request_id
        pending = self._pending.get(rid)
        if pending is None:
            self.counters["stray_replies"] += 1
            log.warning("%s from the broker: %s", header.kind.name, message)
            return
        if pending.block is not None and header.code in (P.Code.NO_LOCAL_WORKER, P.Code.SHM) \
                and isinstance(pending.batch, P.TileBatch):
            # Shared memory cannot reach the worker: send the same tiles again by copy.
            if header.code == P.Code.SHM:
                self._blocks.close()
                self._blocks = None
            self.counters["resent_by_copy"] += 1
            log.info("request %d resent by copy: %s", rid, message)
            self._release(pending, retire=False)
            self._send(pending, use_shm=False)
            return
        status = P.Status.LOST if header.kind == P.Kind.LOST else P.Status.ERROR
        reply = P.Reply(rid, status, pending.batch.frame_id, pending.batch.first_tile, pending.header.count,
                        code=header.code, message=message, round_trip_s=time.monotonic() - pending.sent)
        self._finish(rid, reply, retire=header.code == P.Code.WORKER_DIED)

    def _finish(self, rid: int, reply: P.Reply, retire: bool) -> None:
        pending = self._pending.pop(rid)
        self._release(pending, retire)
        self._ready.append(reply)

    def _release(self, pending: _Pending, retire: bool) -> None:
        if pending.block is None:
            return
        if self._blocks is not None:
            (self._blocks.retire if retire else self._blocks.release)(pending.block)
        else:
            pending.block.close()
        pending.block = None
