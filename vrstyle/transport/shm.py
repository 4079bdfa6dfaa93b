"""Same-host fast path: tile payloads in shared memory, ZeroMQ carrying only descriptors.

A client that shares a host with its workers writes each request's tiles into a block of
shared memory it owns (:class:`BlockPool`), and the worker writes the stylised tiles back
into the same block (:class:`SegmentCache`); the messages carry a
:class:`~vrstyle.transport.protocol.ShmDescriptor` instead of megabytes of pixels.

Lifetimes. The client creates, reuses and unlinks the segments: :meth:`BlockPool.close`
on a clean exit, a finaliser at interpreter exit, and, if the client is killed, Python's
resource tracker (a separate process that unlinks what its parent registered). Workers only
map them, with plain ``mmap`` rather than ``SharedMemory``: before Python 3.13 attaching
registers the segment with the attaching process's resource tracker too (cpython#82300),
which would unlink the client's segment when a worker exits, or, for a worker started by
``multiprocessing`` and so sharing its parent's tracker, cancel the client's registration.
A block whose request went to a second worker after the first stopped answering is retired
rather than reused, since the first may still write into it.

Hosts. :func:`host_id` names the shared-memory namespace a process sees: the kernel's boot id
and the device of ``/dev/shm``, so two containers on one kernel with separate ``/dev/shm``
differ. It travels in every request and in READY; the broker gives a shared-memory request
only to a worker with the same id.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import secrets
import weakref
from collections import OrderedDict
from multiprocessing.shared_memory import SharedMemory

import numpy as np

import tiles
from vrstyle.resources import Resource
from vrstyle.transport.protocol import STAMP_BYTES, Code, FrameSpec, ProtocolError, ShmDescriptor

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
ALIGN = 64
"""Output regions start on a cache line."""
CACHED_SEGMENTS = 64
"""Segments a worker keeps attached (least recently used go first)."""


def host_id() -> int:
    """A 64-bit id shared by exactly the processes that see the same ``/dev/shm``; 0 if none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        device = os.stat(SHM_DIR).st_dev
    except OSError:
        return 0
    digest = hashlib.blake2b(f"{boot}:{device}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


_STILL_VIEWED: set[SharedMemory] = set()


def _view(buffer: memoryview, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """A uint8 array on shared memory that keeps its mapping alive: ``np.frombuffer`` holds an
    export of the buffer, so the segment cannot be unmapped under it (``np.ndarray(buffer=)``
    holds none, and reading it after the segment closed crashed the process)."""
    return np.frombuffer(buffer, np.uint8, int(np.prod(shape)), offset).reshape(shape)


def available() -> bool:
    """Whether this process can use the shared-memory path at all."""
    return host_id() != 0


class Block(Resource):
    """One request's shared memory: the input tiles, then room for the output tiles."""

    def __init__(self, in_bytes: int, out_bytes: int, name: str):
        self.in_bytes, self.out_bytes = in_bytes, out_bytes
        self.out_offset = -(-in_bytes // ALIGN) * ALIGN
        self.name = name
        self.segment = SharedMemory(name=self.name, create=True, size=max(self.out_offset + out_bytes, 1))

    def descriptor(self) -> ShmDescriptor:
        return ShmDescriptor(self.name, 0, self.in_bytes, self.out_offset, self.out_bytes)

    def input(self, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
        return _view(self.segment.buf, shape, offset)

    def output(self, shape: tuple[int, ...]) -> np.ndarray:
        return _view(self.segment.buf, shape, self.out_offset)

    def _free(self) -> None:
        """Unmap and unlink: the name goes now, the memory with the last mapping (a worker's, or
        an array of ours still viewing it)."""
        try:
            self.segment.close()
        except BufferError:  # an array still views it: the mapping goes with the last view
            log.debug("shm segment %s still in use at close", self.name)
            _STILL_VIEWED.add(self.segment)  # closed at exit, not by a garbage collection that would complain
        try:
            self.segment.unlink()
        except FileNotFoundError:
            pass


class BlockPool(Resource):
    """Client side: shared-memory blocks reused by size, unlinked on :meth:`close` or exit."""

    def __init__(self):
        self._idle: dict[tuple[int, int], list[Block]] = {}
        self._all: dict[str, Block | None] = {}  # None: named, maybe not made (an interrupt came)
        self.on_close(weakref.finalize(self, _close_all, self._all))

    def acquire(self, in_bytes: int, out_bytes: int) -> Block:
        idle = self._idle.get((in_bytes, out_bytes))
        if idle:
            return idle.pop()
        name = f"vrs_{os.getpid():x}_{secrets.token_hex(6)}"
        self._all[name] = None  # known before it exists: a SIGTERM landing from here on cannot leak it
        block = self._all[name] = Block(in_bytes, out_bytes, name)
        return block

    def release(self, block: Block) -> None:
        """Back to the pool: nothing will write into it any more."""
        self._idle.setdefault((block.in_bytes, block.out_bytes), []).append(block)

    def retire(self, block: Block) -> None:
        """Never reuse: a worker presumed dead may still write into it. Unlinked now; the
        memory goes when the last mapping does."""
        self._all.pop(block.name, None)
        block.close()

    def _free(self) -> None:
        self._idle.clear()

    @property
    def segments(self) -> int:
        return sum(block is not None for block in self._all.values())


class FrameRing:
    """Client side: ring slots, each a block holding one frame (after its id stamp) and room for
    all its tiles' results, so a frame is copied into shared memory once and workers cut their
    tiles from it. A slot is reused only when no request of its frame is outstanding and the
    caller no longer holds it; one a worker presumed dead may still write into is replaced.

    Args:
        pool: the blocks' owner (unlinks them).
        spec: how every frame is tiled.
        channels: 3 or 4 (RGBA frames are copied as they come).
        slots: frames the ring holds at once (in flight + held by the caller + one to fill).
    """

    def __init__(self, pool: BlockPool, spec: FrameSpec, channels: int, slots: int):
        self.pool, self.spec, self.channels = pool, spec, channels
        self._sizes = (spec.in_bytes(channels), int(np.prod(spec.out_shape())))
        self.blocks = [pool.acquire(*self._sizes) for _ in range(slots)]
        self.busy = [0] * slots
        """Per slot: outstanding requests plus holds (a frame in flight, a result in use)."""

    def acquire(self) -> int | None:
        """A free slot, held, its stamp cleared (a worker still on its old frame sees the
        change); None if every slot is busy. :meth:`fill` puts a frame in it."""
        slot = next((i for i, busy in enumerate(self.busy) if not busy), None)
        if slot is not None:
            self._stamp(slot)[0] = -1
            self.busy[slot] += 1
        return slot

    def fill(self, slot: int, frame_id: int, eyes: np.ndarray, first_eye: int = 0) -> None:
        """Copy ``eyes`` into the slot from eye ``first_eye`` on and :meth:`stamp` it (a frame
        can be filled an eye at a time, so workers start on the first eye while the next is copied)."""
        tiles.copy_frames(eyes, self.frame(slot)[first_eye:first_eye + len(eyes)])
        self.stamp(slot, frame_id)

    def stamp(self, slot: int, frame_id: int) -> None:
        """Mark the slot as holding frame ``frame_id``: requests for the tiles in it may go out."""
        self._stamp(slot)[0] = frame_id

    def _stamp(self, slot: int) -> np.ndarray:
        return self.blocks[slot].input((STAMP_BYTES,))[:8].view("<i8")

    def frame(self, slot: int) -> np.ndarray:
        return self.blocks[slot].input(self.spec.frame_shape(self.channels), STAMP_BYTES)

    def output(self, slot: int) -> np.ndarray:
        return self.blocks[slot].output(self.spec.out_shape())

    def hold(self, slot: int, count: int = 1) -> None:
        self.busy[slot] += count

    def release(self, slot: int, count: int = 1) -> None:
        self.busy[slot] -= count

    def retire(self, slot: int) -> None:
        """Replace the slot's block: a worker that may still write into it was given up on."""
        self.pool.retire(self.blocks[slot])
        self.blocks[slot] = self.pool.acquire(*self._sizes)


def _close_all(blocks: dict[str, Block | None]) -> None:
    """What :meth:`BlockPool.close` frees, also run at interpreter exit for pools nobody closed."""
    for name, block in blocks.items():
        if block is not None:
            block.close()
            continue
        try:  # interrupted while being made: unlink it by name, if it came to exist
            segment = SharedMemory(name=name)
        except FileNotFoundError:
            continue
        segment.close()
        segment.unlink()
    blocks.clear()


class SegmentCache(Resource):
    """Worker side: clients' segments attached once and kept (LRU), never unlinked here."""

    def __init__(self, capacity: int = CACHED_SEGMENTS):
        self.capacity = capacity
        self._segments: OrderedDict[str, _Attached] = OrderedDict()

    def views(self, descriptor: ShmDescriptor, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(input tiles, output tiles) arrays in the client's segment.

        Raises:
            ProtocolError: the segment does not exist here, cannot be mapped or is too small for
                the descriptor.
        """
        segment = self._attach(descriptor.name)
        end = max(descriptor.in_offset + descriptor.in_bytes, descriptor.out_offset + descriptor.out_bytes)
        if end > segment.size:
            raise ProtocolError(Code.SHM, f"shm descriptor reaches byte {end} of a {segment.size}-byte segment")
        tiles = _view(segment.buf, in_shape, descriptor.in_offset)
        out = None if out_shape is None else _view(segment.buf, out_shape, descriptor.out_offset)
        return tiles, out

    def _attach(self, name: str) -> _Attached:
        if name in self._segments:
            self._segments.move_to_end(name)
            return self._segments[name]
        try:
            segment = _Attached(name)
        except FileNotFoundError:
            raise ProtocolError(Code.SHM, f"shm segment {name} does not exist on this host") from None
        except (OSError, ValueError) as exc:  # another user's, or empty: a client's mistake, not ours
            raise ProtocolError(Code.SHM, f"shm segment {name} cannot be mapped: {exc}") from None
        self._segments[name] = segment
        while len(self._segments) > self.capacity:
            self._segments.popitem(last=False)[1].close()
        return segment

    def _free(self) -> None:
        while self._segments:
            self._segments.popitem()[1].close()


class _Attached(Resource):
    """A client's segment mapped here: no SharedMemory object, so no resource tracker involved."""

    def __init__(self, name: str):
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_NOFOLLOW)  # a link could aim anywhere
        try:
            self.size = os.fstat(fd).st_size
            self._mmap = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)  # the mapping keeps the segment
        self.name, self.buf = name, memoryview(self._mmap)

    def _free(self) -> None:
        try:
            self.buf.release()
        except BufferError:  # an array still views it: the mapping goes with the last view
            log.debug("shm segment %s still in use at close", self.name)
            return
        self._mmap.close()
