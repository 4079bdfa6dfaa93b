"""ZeroMQ tile transport: clients -> broker -> style workers -> clients.

One module per concern: :mod:`~vrstyle.transport.protocol` (message format, constants,
limits), :mod:`~vrstyle.transport.broker` (routing, credit, heartbeats, re-dispatch),
:mod:`~vrstyle.transport.worker` (the worker's transport loop), :mod:`~vrstyle.transport.jobs`
(batching requests through style engines, cutting tiles from ring slots),
:mod:`~vrstyle.transport.client` (submit and poll), :mod:`~vrstyle.transport.local` (the
same interface in process), :mod:`~vrstyle.transport.shm` (same-host shared memory and the
frame ring), :mod:`~vrstyle.transport.codec` (compressed tiles for network links),
:mod:`~vrstyle.transport.security` (CurveZMQ keys and ZAP) and
:mod:`~vrstyle.transport.cluster` (a broker and workers started as local processes).
Nothing here imports torch: workers receive their engines ready-made.
"""

from vrstyle.transport.client import TransportClient
from vrstyle.transport.local import LocalBackend
from vrstyle.transport.protocol import Reply, TileBatch

__all__ = ["LocalBackend", "Reply", "TileBatch", "TransportClient"]
