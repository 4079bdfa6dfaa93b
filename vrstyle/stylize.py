"""Single images through their tile grid (``vrstyle stylize``): statistics, then tiles band by band.

An image that fits the memory budget goes through the network in one piece (:func:`plan_image`).
One that does not is tiled: :func:`measure_stats` measures its normalisation statistics at
full resolution, then :func:`stylize_image` stylises it stitched band by band, so memory is
bounded by a couple of rows of tiles. Tiles at the image's border reflect there layer by
layer (:mod:`vrstyle.models.borders`), so with exact statistics and a full halo the result is
the plain network's on the bare image (:func:`stylize_untiled`).

Exact statistics cost a pass per norm layer: each layer's moments depend on every earlier
layer's statistics over the whole image, so pass ``k`` runs every tile up to layer ``k``
with the exact statistics of the layers before (about 6 forward passes for a Johnson net).
A sample of tiles measured jointly costs one pass over the sample and is close, not equal.
No torch here: engines are passed in built.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import tiles
from tiles import Stitcher, TileGrid
from vrstyle import settings
from vrstyle.backend import Backend, as_backend, submit_batch, wait_for
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.transport.protocol import TileBatch

if TYPE_CHECKING:
    from vrstyle.models.engine import StyleEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePlan:
    """How one image is stylised: its grid, tiles per forward pass, tiles measured for statistics."""

    grid: TileGrid
    batch: int
    stats_tiles: int

    @property
    def whole(self) -> bool:
        """One piece, no halo: the plain network's single pass, its statistics measured in it."""
        return len(self.grid) == 1 and self.grid.halo == 0


def plan_image(height: int, width: int, memory_bytes: float, tile: int | None = None, halo: int = settings.HALO,
               overlap: int = settings.OVERLAP, batch: int | None = None,
               stats_tiles: int | None = None) -> ImagePlan:
    """The cheapest way to stylise a ``height x width`` image in this process within ``memory_bytes``.

    Tiles cost work (a 512 px tile with the default halo reads 1.6x its pixels) and a separate
    pass for the statistics, so the whole image goes in one piece when its forward pass fits
    the budget (:data:`~vrstyle.settings.FORWARD_BYTES_PER_PIXEL`); otherwise ``tile`` px tiles
    (default :data:`~vrstyle.settings.TILE`), as many per pass as fit (at least one). A given
    ``tile``, ``batch`` or ``stats_tiles`` is used as given.

    >>> plan_image(768, 1024, 2e9).whole, plan_image(3000, 4000, 1e9).batch
    (True, 3)
    """
    per_pixel = settings.FORWARD_BYTES_PER_PIXEL
    if tile is None and height * width * per_pixel <= memory_bytes:
        return ImagePlan(tiles.plan_grid(height, width, (height, width), 0, 0, settings.ALIGN), 1, 1)
    grid = tiles.plan_grid(height, width, tile or settings.TILE, halo, overlap, settings.ALIGN)
    cost = grid.in_shape[0] * grid.in_shape[1] * per_pixel
    fit = max(1, int(min(memory_bytes / cost, settings.BATCH_TILES + settings.STATS_TILES)))  # inf: no budget
    return ImagePlan(grid, batch or min(settings.BATCH_TILES, fit), stats_tiles or min(settings.STATS_TILES, fit))


def sample_tiles(grid: TileGrid, count: int) -> list[int]:
    """``count`` tile indices spread evenly over the grid (all of them if it has fewer).

    >>> sample_tiles(tiles.plan_grid(1000, 1000, tile=200, halo=8, overlap=0), 3)
    [0, 12, 24]
    """
    if count >= len(grid):
        return list(range(len(grid)))
    return np.linspace(0, len(grid) - 1, count).round().astype(int).tolist()


def measure_stats(engine: "StyleEngine | Backend", images: np.ndarray, grid: TileGrid,
                  count: int = settings.STATS_TILES, style: str = settings.DEFAULT_STYLE,
                  worker_wait_s: float = settings.WORKER_WAIT_S) -> np.ndarray:
    """Normalisation statistics (2, C) of one image or a stereo pair from a sample of tiles.

    Measured jointly over the cores of ``count`` tiles spread over each image (both eyes
    together, so they match), at full resolution, never from a downscaled thumbnail; in one
    request, so a worker measures exactly what an in-process engine does. Exact when
    ``count`` covers the grid; :func:`exact_stats` is exact at any size in bounded memory.
    """
    backend = as_backend(engine)
    indices = sample_tiles(grid, count)
    sample = tiles.cut(images, grid, indices)
    bounds = np.tile(grid.bounds(indices), (len(sample) // len(indices), 1))
    rid = submit_batch(backend, TileBatch(style, sample, margin=grid.margin, measure=True, bounds=bounds))
    reply = wait_for(backend, {rid}, style=style, worker_wait_s=worker_wait_s)[0]
    return moments_to_stats(combine_moments([reply.moments]))


def exact_stats(engine: "StyleEngine | Backend", image: np.ndarray, grid: TileGrid, start: np.ndarray,
                batch: int = settings.BATCH_TILES, style: str = settings.DEFAULT_STYLE,
                inflight: int = settings.STYLIZE_INFLIGHT, progress: bool | None = False,
                worker_wait_s: float = settings.WORKER_WAIT_S) -> np.ndarray:
    """The whole image's normalisation statistics (2, C), exactly, ``batch`` tiles at a time.

    One pass over the tiles per norm layer (module docstring): pass ``k`` normalises with the
    exact statistics of the layers before and stops after measuring layer ``k`` (a worker
    says which columns it measured by their counts). Memory: ``batch`` tiles' activations.
    ``start``: (2, C) statistics of the same network (e.g. :func:`measure_stats`'s sample),
    replaced layer by layer.
    """
    backend = as_backend(engine)
    stats = np.array(start, np.float32)
    channels = stats.shape[-1]
    done = passes = 0
    began = time.perf_counter()
    chunks = [list(range(first, min(first + batch, len(grid)))) for first in range(0, len(grid), batch)]
    with progress_bar(total=channels, progress=progress, unit="channel", desc="statistics") as bar:
        while done < channels:
            moments, queue = [], list(chunks)
            submitted: set[int] = set()
            while queue or submitted:
                while queue and len(submitted) < inflight:
                    indices = queue.pop(0)
                    submitted.add(submit_batch(backend, TileBatch(
                        style, tiles.cut(image, grid, indices), stats, margin=grid.margin, measure=True,
                        bounds=grid.bounds(indices), measure_to=done + 1, first_tile=indices[0])))
                for reply in wait_for(backend, submitted, any_one=True, style=style, worker_wait_s=worker_wait_s):
                    submitted.discard(reply.request_id)
                    moments.append(reply.moments)
            merged = combine_moments(moments)
            unmeasured = np.flatnonzero(merged[0, done:] == 0)
            measured = done + int(unmeasured[0]) if len(unmeasured) else channels
            if measured <= done:
                raise VrstyleError(f"statistics pass measured no new layer after column {done}")
            stats[:, done:measured] = moments_to_stats(merged)[:, done:measured]
            bar.update(measured - done)
            done, passes = measured, passes + 1
    log.info("exact statistics: %d passes over %d tiles in %.1f s; the sample was off by up to %.3g in a mean, "
             "%.3g relative in a variance", passes, len(grid), time.perf_counter() - began,
             np.abs(stats[0] - start[0]).max(), (np.abs(stats[1] - start[1]) / np.maximum(stats[1], 1e-6)).max())
    return stats


def stylize_image(engine: "StyleEngine | Backend", image: np.ndarray, grid: TileGrid, shared_stats: bool = True,
                  batch: int = settings.BATCH_TILES, ramp: str = settings.RAMP,
                  stats_tiles: int = settings.STATS_TILES, progress: bool | None = False,
                  style: str = settings.DEFAULT_STYLE, inflight: int = settings.STYLIZE_INFLIGHT,
                  worker_wait_s: float = settings.WORKER_WAIT_S, stats: np.ndarray | None = None,
                  exact: bool = False) -> np.ndarray:
    """Stylise one (H, W, 3) uint8 image through its tile grid.

    Args:
        engine: a style engine (run here) or a backend (e.g. a broker client).
        image: (H, W, 3) uint8 RGB.
        grid: tile grid planned for the image.
        shared_stats: normalise every tile with the image's statistics (seam-free); False
            gives each tile its own statistics (seams; for comparison), one tile per request.
            A grid of one tile needs no separate pass: its own statistics are the image's.
        batch: tiles per request.
        ramp: feather ramp.
        stats_tiles: tiles measured together for the statistics (see :func:`measure_stats`).
        stats: the image's statistics, if already known (e.g. :func:`exact_stats`).
        exact: where the sample of ``stats_tiles`` does not cover the grid, go on to the
            exact statistics (:func:`exact_stats`, a pass per norm layer).
        progress: show a progress bar (None: only on a terminal).
        style: the style a backend's workers know the model by.
        inflight: requests outstanding at once (to keep several workers busy).
        worker_wait_s: how long to wait, saying so, when no worker serves ``style`` any more.

    Returns:
        (H, W, 3) uint8 stylised image.

    Raises:
        VrstyleError: a request failed or was lost, or nothing came back for
            :data:`~vrstyle.settings.STYLIZE_STALL_S`.
    """
    backend = as_backend(engine)
    if len(grid) == 1 and stats is None:  # the one tile's own statistics are the image's: measured in the same pass
        shared_stats = False
    if shared_stats and stats is None:
        stats = measure_stats(backend, image, grid, stats_tiles, style, worker_wait_s)
        if not stats.shape[-1]:  # a network without normalisation layers: no statistics to share
            stats = None
        elif exact and stats_tiles < len(grid):
            stats = exact_stats(backend, image, grid, stats, batch, style, inflight, progress, worker_wait_s)
    elif not shared_stats:
        stats = None
    size, margin = (batch, grid.margin) if shared_stats else (1, 0)
    chunks = [(row, list(range(row * grid.cols + start, row * grid.cols + min(start + size, grid.cols))))
              for row in range(grid.rows) for start in range(0, grid.cols, size)]
    out = np.empty_like(image)
    rows: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    submitted: dict[int, tuple[int, list[int]]] = {}
    next_chunk = band = 0
    with progress_bar(total=len(grid), progress=progress, unit="tile", desc="stylize") as bar:
        while band < grid.rows:
            # Bounded memory: requests for at most the band being assembled and the row after it.
            while next_chunk < len(chunks) and len(submitted) < inflight and chunks[next_chunk][0] <= band + 1:
                row, indices = chunks[next_chunk]
                pieces = tiles.cut(image, grid, indices)
                rid = submit_batch(backend, TileBatch(style, pieces, stats, crop=grid.halo, margin=margin,
                                                      first_tile=indices[0], bounds=grid.bounds(indices)))
                submitted[rid] = chunks[next_chunk]
                next_chunk += 1
            for reply in wait_for(backend, set(submitted), any_one=True, style=style, worker_wait_s=worker_wait_s):
                row, indices = submitted.pop(reply.request_id)
                rows[row].update(zip(indices, reply.tiles))
                bar.update(len(indices))
            while band < grid.rows and len(rows[band]) == grid.cols:
                top = 0 if band == 0 else band * grid.core_h - grid.overlap
                bottom = grid.height if band == grid.rows - 1 else (band + 1) * grid.core_h - grid.overlap
                stitcher = Stitcher(grid, ramp=ramp, rows=(top, bottom), dtype=np.uint8)
                for index, tile in {**rows.get(band - 1, {}), **rows[band]}.items():
                    stitcher.add(index, tile)
                out[top:bottom] = stitcher.result()[0]
                rows.pop(band - 1, None)
                band += 1
    return out


def stylize_untiled(engine: "StyleEngine", image: np.ndarray, stats: np.ndarray | None = None) -> np.ndarray:
    """The plain network on the bare image, in one pass: what the tiles reproduce.

    With ``stats`` None it normalises with the image's own statistics, as the network was
    trained (and as pytorch/examples runs it). A network that rounds sizes up to its stride
    returns more rows and columns; they are cut off, as the tiles' stitch does.
    """
    height, width = image.shape[:2]
    return engine.stylize(image[None], stats)[0][:height, :width]
