"""Engines that answer without a network, to measure the data path alone.

A worker serves them as the styles ``null`` and ``identity`` (``vrstyle worker --style null``;
``vrstyle bench --data-path null`` starts such workers): ``null`` answers each request at
once with a ready-made tile, so only the messages and the pipeline's own work remain;
``identity`` returns every tile's core and overlap as they came, so every byte moves as with a
real network. No torch here.
"""

from __future__ import annotations

import numpy as np

STATS_CHANNELS = 1
"""Their statistics are one dummy channel (the pipeline's bookkeeping runs as for a network)."""


class NullEngine:
    """Answers every request with a ready-made black tile of the right shape."""

    stats_channels = STATS_CHANNELS
    reads_pixels = False
    """Workers need not cut tiles for it from a ring slot (a tile's shape is all it looks at)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[int, ...], np.ndarray] = {}

    def stylize_and_measure(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int, margin: int,
                            bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(tiles), tiles.shape[1] - 2 * crop, tiles.shape[2] - 2 * crop, 3)
        answer = self._answers.get(shape)
        if answer is None:  # made once per shape (setdefault would allocate one every call)
            answer = self._answers[shape] = np.zeros(shape, np.uint8)
        return answer, _moments(len(tiles) if stats is not None else 1)

    def measure(self, tiles: np.ndarray, margin: int, bounds: np.ndarray | None = None,
                stats: np.ndarray | None = None, measure_to: int = 0) -> np.ndarray:
        return _moments(len(tiles)) if stats is not None else _moments(1)[0]


class IdentityEngine(NullEngine):
    """Returns each tile's core and overlap, RGB, as they came (the worker copies them into its reply).

    >>> tiles = np.arange(2 * 6 * 6 * 4, dtype=np.uint8).reshape(2, 6, 6, 4)
    >>> out, _ = IdentityEngine().stylize_and_measure(tiles, None, 1, 1)
    >>> out.shape, bool((out == tiles[:, 1:5, 1:5, :3]).all())
    ((2, 4, 4, 3), True)
    """

    reads_pixels = True

    def stylize_and_measure(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int, margin: int,
                            bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        height, width = tiles.shape[1:3]
        core = tiles[:, crop:height - crop, crop:width - crop, :3]  # a view: the worker's one copy moves it
        return core, _moments(len(tiles) if stats is not None else 1)


DATA_PATHS = {"null": NullEngine, "identity": IdentityEngine}
"""Style name -> engine class."""


def _moments(rows: int) -> np.ndarray:
    moments = np.zeros((rows, 3, STATS_CHANNELS))
    moments[:, 0] = 1  # one pixel of mean 0, variance 0
    return moments
