"""Seam-free tiling: with shared statistics and a full halo, tiles reproduce the plain network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiles
from vrstyle.models import NormContext, StyleEngine
from vrstyle.stylize import stylize_image, stylize_untiled

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _inference():
    """Gradients off in this module only (a module-level switch would leak into other tests)."""
    with torch.no_grad():
        yield


def seam_mask(grid: tiles.TileGrid, width: int = 4) -> np.ndarray:
    """Pixels within ``width`` of a boundary between tile cores."""
    mask = np.zeros((grid.height, grid.width), bool)
    for r in range(1, grid.rows):
        mask[r * grid.core_h - width:r * grid.core_h + width] = True
    for c in range(1, grid.cols):
        mask[:, c * grid.core_w - width:c * grid.core_w + width] = True
    return mask


def test_tiled_equals_whole_with_shared_stats(teacher, photo):
    """fp32 on the CPU, 1024x768, halo 56: the plain network on the bare image to 1e-3, borders
    included; per-tile statistics: seams."""
    net = teacher("candy")
    grid = tiles.plan_grid(768, 1024, tile=512, halo=56, overlap=16)
    assert len(grid) == 4
    image = torch.from_numpy(photo.copy()).permute(2, 0, 1).float()
    capture = torch.empty(3, net.stats_channels)
    whole = net(image[None], NormContext(capture=capture))[0].clamp(0, 255)
    stats = capture[1:]
    pieces, bounds = tiles.cut(image, grid), grid.bounds()

    def tiled(given):
        out = torch.cat([net(piece[None], NormContext(given, bounds=(tuple(bound),)))
                         for piece, bound in zip(pieces, bounds.tolist())])
        return tiles.stitch(tiles.crop_halo(out, grid), grid)[0].clamp(0, 255)

    shared = (tiled(stats) - whole).abs()
    assert shared.max().item() < 1e-3
    naive = (tiled(None) - whole).abs().amax(dim=0).numpy()
    at_seams = naive[seam_mask(grid)].mean()
    assert at_seams > 10, f"per-tile statistics should visibly disagree at seams, got {at_seams:.2f}"


def test_stylize_image_matches_untiled_in_uint8(teacher, photo):
    """The banded uint8 pipeline with exact statistics gives the plain network's result on the
    bare image (odd size, 16 tiles: more than the sample), up to the last bit of rounding;
    the sample alone does not."""
    engine = StyleEngine(teacher("udnie"))
    image = np.ascontiguousarray(photo[:501, :613])
    grid = tiles.plan_grid(*image.shape[:2], tile=160, halo=56, overlap=16)
    assert len(grid) == 16
    whole = stylize_untiled(engine, image).astype(int)
    tiled = stylize_image(engine, image, grid, batch=2, exact=True).astype(int)
    assert np.abs(tiled - whole).max() <= 1
    assert (tiled != whole).mean() < 1e-3
    assert np.abs(tiled - image).mean() > 20  # it did stylise
    sampled = stylize_image(engine, image, grid, batch=2, exact=False).astype(int)
    assert np.abs(sampled - whole).max() > 1
