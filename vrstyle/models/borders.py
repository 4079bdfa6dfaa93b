"""The image's borders inside tiles: every layer reflects there, as the whole network does.

A tile at the edge of an image reads, beyond the border, pixels the grid reflected in. That
reproduces the network's first layer, not the rest: each convolution of the network reflects
its *own* input at the image border, and after one layer the activations beyond the border
are no longer the reflection of those inside it (a kernel is not symmetric). So the tiles
carry their bounds (:meth:`tiles.TileGrid.bounds`: where the image lies in each tile) and
each layer, before padding, overwrites what lies beyond a border with the reflection of what
lies inside it. A tile then computes, at every layer, what the network computes on the bare
image, out to its edges.

Bounds are per image of a batch, ``(top, bottom, left, right)`` in the tile's input pixels;
a side outside the tile is not a border of it. A layer sees them through its :class:`Level`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tiles import bounds_outside

Bounds = tuple[tuple[int, int, int, int], ...]
"""Per image: top, bottom, left, right of the image region, in some layer's pixels."""


@dataclass(frozen=True)
class Level:
    """Where a layer's input sits in its network, for mapping bounds onto it.

    Attributes:
        scale: input pixels per pixel of this layer (1, 2, 4 on the way down and back up).
        quantum: the image's length here is ``ceil(length / quantum) * quantum / scale``:
            ``scale`` on the way down (each stride-2 layer rounds up), the network's total
            stride after nearest upsampling (the way up repeats the deepest rounding).
    """

    scale: int = 1
    quantum: int = 1

    def __post_init__(self) -> None:
        if self.scale < 1 or self.quantum < self.scale or self.quantum % self.scale:
            raise ValueError(f"a level needs scale >= 1 and quantum a multiple of it, got {self}")

    def map(self, bounds: Bounds) -> Bounds:
        """``bounds`` (input pixels) in this layer's pixels.

        >>> Level(2, 4).map(((8, 8 + 101, 0, 64),))  # 101 rows: 26 at 1/4, 52 on the way up
        ((4, 56, 0, 32),)
        """
        return tuple(self._side(top, bottom) + self._side(left, right) for top, bottom, left, right in bounds)

    def _side(self, start: int, stop: int) -> tuple[int, int]:
        begin = start // self.scale
        return begin, begin + -(-(stop - start) // self.quantum) * (self.quantum // self.scale)


def as_bounds(array: Sequence[Sequence[int]] | None) -> Bounds | None:
    """(N, 4) integers (e.g. :meth:`tiles.TileGrid.bounds`) as hashable :data:`Bounds`."""
    return None if array is None else tuple(tuple(int(v) for v in row) for row in array)


def crosses(bounds: Bounds | None, height: int, width: int) -> bool:
    """Whether an image border lies inside a ``height x width`` tile (else bounds change nothing)."""
    return bounds is not None and any(top > 0 or bottom < height or left > 0 or right < width
                                      for top, bottom, left, right in bounds)


def check_bounds(bounds: Bounds, count: int, height: int, width: int, align: int) -> None:
    """Raise ValueError unless ``bounds`` fit ``count`` tiles of ``height x width`` on the
    network's phase (``top``/``left`` multiples of ``align``, its total stride)."""
    if len(bounds) != count:
        raise ValueError(f"{len(bounds)} tile bounds for {count} tiles")
    outside = bounds_outside(np.array(bounds), height, width)
    if outside is not None:
        raise ValueError(f"tile bounds {tuple(outside.tolist())} leave no image in a {height}x{width} tile")
    for top, bottom, left, right in bounds:
        if top % align or left % align:
            raise ValueError(f"tile bounds {(top, bottom, left, right)} start off the network's phase "
                             f"(multiples of {align})")


def reflect_at_borders(x: torch.Tensor, bounds: Bounds, pad: int, symmetric: bool = False) -> torch.Tensor:
    """Overwrite the ``pad`` rows and columns beyond each image border with their reflection.

    What ``nn.ReflectionPad2d(pad)`` would put there if the tile ended at the border (the edge
    row is not repeated), so a padded convolution after it computes the whole image's values
    inside the border. In place, unless autograd needs ``x``.

    Args:
        x: (N, C, H, W) activations of N tiles.
        bounds: per tile, the image region in ``x``'s pixels.
        pad: rows and columns to refresh beyond each border (the next convolution's padding).
        symmetric: mirror with the edge row repeated (numpy's ``symmetric``; one row of it is
            ``nn.ReplicationPad2d(1)``), as an upsampling convolution pads its low-resolution
            input (:func:`vrstyle.models.transformer.upsample_conv3x3`).

    Returns:
        ``x`` (or its copy) with the reflections written.

    Raises:
        ValueError: bounds for another number of tiles.

    >>> x = torch.arange(6.0).reshape(1, 1, 1, 6)
    >>> reflect_at_borders(x, ((0, 1, 2, 6),), pad=2).flatten().tolist()
    [4.0, 3.0, 2.0, 3.0, 4.0, 5.0]
    >>> reflect_at_borders(x, ((0, 1, 2, 6),), pad=2, symmetric=True).flatten().tolist()
    [3.0, 2.0, 2.0, 3.0, 4.0, 5.0]
    """
    if len(bounds) != x.shape[0]:
        raise ValueError(f"{len(bounds)} tile bounds for a batch of {x.shape[0]}")
    if x.requires_grad and torch.is_grad_enabled():
        x = x.clone()
    height, width = x.shape[-2:]
    for tile, (top, bottom, left, right) in zip(x, bounds):
        _reflect_axis(tile, top, bottom, pad, dim=1, length=height, skip=int(not symmetric))
        _reflect_axis(tile, left, right, pad, dim=2, length=width, skip=int(not symmetric))
    return x


def _reflect_axis(tile: torch.Tensor, start: int, stop: int, pad: int, dim: int, length: int, skip: int) -> None:
    """Mirror along ``dim`` at ``start`` and ``stop``, ``skip`` edge rows left out of the mirror image."""
    if 0 < start < length:
        count = min(pad, start)
        tile.narrow(dim, start - count, count).copy_(tile.narrow(dim, start + skip, count).flip(dim))
    if 0 < stop < length:
        count = min(pad, length - stop)
        tile.narrow(dim, stop, count).copy_(tile.narrow(dim, stop - skip - count, count).flip(dim))


def measured_regions(bounds: Bounds | None, margin: int, height: int, width: int) -> Bounds:
    """Per tile, the pixels whose moments count: the core (``margin`` in) within the image.

    >>> measured_regions(((4, 20, -8, 40),), margin=2, height=24, width=24)
    ((4, 20, 2, 22),)
    """
    inset = (margin, height - margin, margin, width - margin)
    if bounds is None:
        return (inset,)
    return tuple((max(inset[0], top), min(inset[1], bottom), max(inset[2], left), min(inset[3], right))
                 for top, bottom, left, right in bounds)
