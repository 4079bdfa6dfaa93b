"""Single images through their tile grid (``vrstyle stylize``): statistics, then tiles band by band.

:func:`measure_stats` measures the image's normalisation statistics at full resolution, then
:func:`stylize_image` stylises it stitched band by band, so memory is bounded by a couple of
rows of tiles. :func:`stylize_untiled` is the whole-image computation the tiles reproduce.
No torch here: engines are passed in built.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import tiles
from tiles import Stitcher, TileGrid
from vrstyle import settings
from vrstyle.backend import Backend, as_backend, submit_batch, wait_for
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.transport.protocol import TileBatch

if TYPE_CHECKING:
    from vrstyle.models.engine import StyleEngine


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

    >>> plan_image(768, 1024, 2e9).whole, plan_image(3000, 4000, 2e9).batch
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
    """Normalisation statistics (2, C) of one image or a stereo pair, at full resolution.

    Measured jointly over the cores of ``count`` tiles spread over each image (both eyes
    together, so they match), never from a downscaled thumbnail; in one request, so a
    worker measures exactly what an in-process engine does.
    """
    backend = as_backend(engine)
    sample = tiles.cut(images, grid, sample_tiles(grid, count))
    rid = submit_batch(backend, TileBatch(style, sample, margin=grid.margin, measure=True))
    reply = wait_for(backend, {rid}, style=style, worker_wait_s=worker_wait_s)[0]
    return moments_to_stats(combine_moments([reply.moments]))


def stylize_image(engine: "StyleEngine | Backend", image: np.ndarray, grid: TileGrid, shared_stats: bool = True,
                  batch: int = settings.BATCH_TILES, ramp: str = settings.RAMP,
                  stats_tiles: int = settings.STATS_TILES, progress: bool | None = False,
                  style: str = settings.DEFAULT_STYLE, inflight: int = settings.STYLIZE_INFLIGHT,
                  worker_wait_s: float = settings.WORKER_WAIT_S) -> np.ndarray:
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
    if len(grid) == 1:  # the one tile's own statistics are the image's: measured in the same pass
        shared_stats = False
    stats = measure_stats(backend, image, grid, stats_tiles, style, worker_wait_s) if shared_stats else None
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
                                                 first_tile=indices[0]))
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


def stylize_untiled(engine: "StyleEngine", image: np.ndarray, grid: TileGrid, stats: np.ndarray | None) -> np.ndarray:
    """The whole-image computation the grid's tiles reproduce: one pass over the padded image.

    The image is reflected out by the grid's margin exactly as the tiles see it, so with
    shared statistics and a full halo the tiled result equals this one.
    """
    padded = tiles.pad_frame(image, grid)[None]
    styled = engine.stylize(padded, stats)[0]
    return tiles.crop_frame(styled, grid)
