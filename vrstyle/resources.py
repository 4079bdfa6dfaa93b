"""One way to free what vrstyle holds: GL names, OpenXR handles, sockets, processes, shared memory.

Every owner is a :class:`Resource`: ``close()`` frees it once (a second call does nothing, so it
never frees names that a newer object may have been given since), and ``with`` closes it.
An owner made of other resources registers each one as it makes it (:meth:`Resource.own`,
:meth:`Resource.on_close`) on one :class:`contextlib.ExitStack`, and builds inside
:meth:`Resource.building`, so a constructor that fails half-way frees exactly what it made,
in reverse order, and re-raises.

>>> class Thing(Resource):
...     def __init__(self, log):
...         with self.building():
...             self.on_close(log.append, "freed")
>>> log = []
>>> with Thing(log) as thing:
...     pass
>>> thing.close(); log
['freed']
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, TypeVar

R = TypeVar("R", bound="Resource")
C = TypeVar("C")


class Resource:
    """Something that must be freed: :meth:`close` once (safe twice), or use it as a context manager.

    Subclasses free their own parts in :meth:`_free` and/or register parts with :meth:`own`
    and :meth:`on_close`; registered parts are freed after :meth:`_free`, newest first.
    """

    _closed = False
    _stack: contextlib.ExitStack | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def own(self, resource: C) -> C:
        """Close ``resource`` (anything with ``close()``) when this one closes; returns it."""
        self._exit_stack().callback(resource.close)
        return resource

    def on_close(self, free: Callable[..., Any], *args: Any) -> None:
        """Call ``free(*args)`` when this resource closes (after what is registered later)."""
        self._exit_stack().callback(free, *args)

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Wrap a constructor's body: if it raises, what it made so far is freed first."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Free everything this resource holds; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._free()
        finally:
            if self._stack is not None:
                self._stack.close()

    def _free(self) -> None:
        """Free what this resource holds itself (beyond what it registered); default nothing."""

    def _exit_stack(self) -> contextlib.ExitStack:
        if self._stack is None:
            self._stack = contextlib.ExitStack()
        return self._stack

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
