"""The backend interface without any transport: batches run in this process, on submit.

Same calls and :class:`~vrstyle.transport.protocol.Reply` objects as
:class:`~vrstyle.transport.client.TransportClient`, and the same batching code as the workers
(:func:`~vrstyle.transport.jobs.process`), so a pipeline gives identical frames in process
and through a broker. Used by ``vrstyle stylize`` without ``--broker``, by the benchmark's
no-transport baseline and by tests.
"""

from __future__ import annotations

import time

import numpy as np
from typing import Any, Mapping

from vrstyle.resources import Resource
from vrstyle.transport import protocol as P
from vrstyle.transport.shm import host_id
from vrstyle.transport.jobs import Engine, Job, process


class LocalBackend(Resource):
    """Runs batches on engines in this process.

    Args:
        engines: one engine (used for any style name) or a mapping style name -> engine.
    """

    def __init__(self, engines: Engine | Mapping[str, Engine]):
        self.engines = engines
        self._ready: list[P.Reply] = []
        self._next_id = 1

    @property
    def pending(self) -> int:
        return 0

    def engine(self, style: str) -> Engine | None:
        if isinstance(self.engines, Mapping):
            return self.engines.get(style)
        return self.engines

    def status(self, timeout: float = 0.0) -> dict[str, Any]:
        """A broker-like status: one in-process "worker" serving the styles."""
        styles = dict.fromkeys(self.engines, 0) if isinstance(self.engines, Mapping) else {"*": 0}
        return {"workers": [{"styles": styles, "host": host_id(), "device": "in-process"}], "queued": 0,
                "counters": {}}

    def submit(self, batch: P.TileBatch) -> int:
        """Run the batch now; its reply waits for :meth:`poll`. Raises ProtocolError (ValueError)
        for batches the transport would refuse too."""
        rid = self._next_id
        self._next_id += 1
        header = batch.header(rid)
        P.check_request_header(header)
        engine = self.engine(batch.style)
        start = time.monotonic()
        if engine is None:
            reply = P.Reply(rid, P.Status.ERROR, batch.frame_id, batch.first_tile, header.count, code=P.Code.STYLE,
                            message=f"no engine for style {batch.style!r}")
        elif batch.stats is not None and batch.stats.shape[-1] != engine.stats_channels:
            reply = P.Reply(rid, P.Status.ERROR, batch.frame_id, batch.first_tile, header.count, code=P.Code.STATS,
                            message=f"statistics for {batch.stats.shape[-1]} channels, style {batch.style!r} "
                                    f"has {engine.stats_channels}")
        else:
            outcome = process(engine, [_job(header, batch)])[0]
            if outcome.code:
                reply = P.Reply(rid, P.Status.ERROR, batch.frame_id, batch.first_tile, header.count,
                                code=outcome.code, message=outcome.message)
            else:
                tiles = batch.out if batch.out is not None and not batch.measure else outcome.tiles
                reply = P.Reply(rid, P.Status.OK, batch.frame_id, batch.first_tile, header.count, tiles,
                                outcome.moments, infer_s=outcome.infer_s)
        reply.round_trip_s = time.monotonic() - start
        self._ready.append(reply)
        return rid

    def cancel(self, frame_id: int) -> None:
        """Nothing to withdraw: a batch here is done when :meth:`submit` returns."""

    def poll(self, timeout: float = 0.0) -> list[P.Reply]:
        ready, self._ready = self._ready, []
        return ready

    def _free(self) -> None:
        self._ready.clear()


def _job(header: P.Header, batch: P.TileBatch) -> Job:
    """A batch as the worker's batching code sees a request."""
    bounds = None if batch.bounds is None else np.asarray(batch.bounds, P.BOUNDS_DTYPE).reshape(-1, 4)
    return Job(header, batch.tiles, batch.stats, out=None if batch.measure else batch.out, bounds=bounds)
