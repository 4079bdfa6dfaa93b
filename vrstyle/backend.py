"""Where tile batches are stylised: the interface the pipelines send through.

A backend is :class:`~vrstyle.transport.local.LocalBackend` (in this process) or
:class:`~vrstyle.transport.client.TransportClient` (through a broker to workers on this host or
others); both give identical tiles. No torch here: the headset client uses it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.transport.local import LocalBackend
from vrstyle.transport.protocol import ProtocolError, Reply, Status, TileBatch

if TYPE_CHECKING:
    from vrstyle.models.engine import StyleEngine

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Where tile batches are stylised: in process or through a broker (one thread at a time)."""

    @property
    def pending(self) -> int: ...

    def submit(self, batch: TileBatch) -> int: ...

    def cancel(self, frame_id: int) -> None:
        """Withdraw the frame's requests that no worker has started (latest frame wins)."""

    def poll(self, timeout: float = 0.0) -> list[Reply]: ...

    def status(self, timeout: float = ...) -> dict[str, Any]: ...

    def close(self) -> None: ...


def as_backend(engine_or_backend: "StyleEngine | Backend") -> Backend:
    """A backend as is; a style engine wrapped in a :class:`LocalBackend`."""
    if hasattr(engine_or_backend, "submit"):
        return engine_or_backend
    return LocalBackend(engine_or_backend)


def submit_batch(backend: Backend, batch: TileBatch) -> int:
    """Send ``batch``; a message the transport refuses is one error line."""
    try:
        return backend.submit(batch)
    except ProtocolError as exc:
        raise VrstyleError(f"cannot send {len(batch.tiles)} tiles of {batch.tiles.shape[1]}x{batch.tiles.shape[2]} "
                           f"px: {exc}") from None


def wait_for(backend: Backend, request_ids: set[int], any_one: bool = False, style: str | None = None,
             worker_wait_s: float = settings.WORKER_WAIT_S) -> list[Reply]:
    """Replies for ``request_ids`` (all of them, or at least one); failures are errors here.

    While nothing comes back, the broker is asked every :data:`~vrstyle.settings.WORKER_CHECK_S`
    whether a worker still serves ``style``: if none does, that is said at once (a warning) and
    the wait ends with an error after ``worker_wait_s`` unless one comes back.
    """
    replies: list[Reply] = []
    waiting = set(request_ids)
    last_reply = time.monotonic()
    orphaned_since: float | None = None
    while waiting and not (any_one and replies):
        arrived = backend.poll(settings.WORKER_CHECK_S)
        now = time.monotonic()
        if arrived:
            last_reply, orphaned_since = now, None
        elif now - last_reply > settings.STYLIZE_STALL_S:
            raise VrstyleError(f"no tile came back for {settings.STYLIZE_STALL_S:g} s (are workers running?)")
        elif style is not None and not serves(backend, style):
            if orphaned_since is None:
                orphaned_since = now
                log.warning("no worker serves %s any more (it stopped or died); waiting %g s for one to join",
                            style, worker_wait_s)
            elif now - orphaned_since > worker_wait_s:
                raise VrstyleError(f"no worker served {style} for {worker_wait_s:g} s; start one with "
                                   f"`vrstyle worker --style {style}` and run again")
        elif orphaned_since is not None:
            log.warning("a worker serves %s again", style)
            orphaned_since = None
        for reply in arrived:
            if reply.request_id not in waiting:
                continue
            if reply.status != Status.OK:
                raise VrstyleError(f"tiles {reply.status} ({reply.reason}): {reply.message}")
            waiting.discard(reply.request_id)
            replies.append(reply)
    return replies


def serves(backend: Backend, style: str) -> bool:
    """Whether a worker of ``backend`` serves ``style`` now (an in-process backend serves all)."""
    workers = backend.status()["workers"]
    return any(style in worker["styles"] or "*" in worker["styles"] for worker in workers)
