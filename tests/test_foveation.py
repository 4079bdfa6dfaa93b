"""Foveation: peripheral tiles at 1/2 and 1/4 resolution, upscaled back; the centre untouched."""

from __future__ import annotations

import numpy as np
import pytest

import tiles
from tiles import GridError
from vrstyle.normstats import moments_to_stats
from vrstyle.pipeline import FramePipeline
from vrstyle.transport import LocalBackend

GRID = tiles.plan_grid(320, 320, tile=64, halo=8, overlap=4, core_align=16)
RINGS = (0.3, 0.7)


def smooth_eyes(height: int = 320, width: int = 320) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    eye = np.stack([127 + 100 * np.sin(x / 17), 127 + 100 * np.cos(y / 23), 127 + 60 * np.sin((x + y) / 29)], -1)
    return np.stack([eye, eye[:, ::-1]]).astype(np.uint8)


def only_full_size(scales: np.ndarray, grid=GRID) -> np.ndarray:
    """(eyes, H, W) pixels that no scaled tile's weight reaches."""
    marks = np.zeros((len(scales),) + grid.out_shape + (1,), np.float32)
    marks[scales == 1] = 1
    return tiles.stitch(marks, grid)[..., 0] == 1


def test_tile_scales_ring_out_from_the_centre_or_the_gaze():
    grid = tiles.plan_grid(2208, 2064, tile=512, halo=56, overlap=16, core_align=16)
    scales = tiles.tile_scales(grid, (1104, 1032)).reshape(grid.rows, grid.cols)
    assert (scales[1:4, 1:4] == 1).all() and scales[0, 0] == scales[4, 4] == 4 and scales[0, 2] == 2
    corner = tiles.tile_scales(grid, (0, 0)).reshape(grid.rows, grid.cols)
    assert corner[0, 0] == 1 and corner[4, 4] == 4
    assert (tiles.tile_scales(grid, (1104, 1032), (0.3,)) <= 2).all()
    with pytest.raises(GridError, match="increasing"):
        tiles.tile_scales(grid, (0, 0), (0.7, 0.3))


def test_scaled_tiles_need_cores_that_divide_down():
    with pytest.raises(GridError, match="core_align=16"):
        tiles.level_grid(tiles.plan_grid(100, 100, tile=36, halo=8, overlap=4), 4)
    with pytest.raises(GridError, match="multiple of the alignment"):
        tiles.plan_grid(100, 100, tile=36, core_align=6)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("overlap", [0, 3, 4, 16])
def test_the_upscale_reads_only_inside_the_scaled_tile(scale, overlap):
    grid = tiles.plan_grid(300, 200, tile=96, halo=12, overlap=overlap, core_align=16)
    level = tiles.level_grid(grid, scale)
    rows, _, cols, _ = tiles.foveate.upscale_weights(grid, scale)
    assert rows.min() >= 0 and rows.max() + 1 < level.out_shape[0]
    assert cols.min() >= 0 and cols.max() + 1 < level.out_shape[1]
    assert level.margin % 4 == 0 and level.halo >= grid.halo


@pytest.mark.parametrize("scale", [2, 4])
def test_downscale_is_the_rounded_mean_of_each_block_edges_replicated(scale):
    images = np.random.default_rng(scale).integers(0, 256, (2, 101, 67, 3), np.uint8)
    padded = np.pad(images, ((0, 0), (0, -101 % scale), (0, -67 % scale), (0, 0)), mode="edge")
    blocks = padded.reshape(2, padded.shape[1] // scale, scale, padded.shape[2] // scale, scale, 3)
    expected = np.floor(blocks.mean(axis=(2, 4)) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(tiles.downscale(images, scale), expected)
    with pytest.raises(GridError, match="power of two"):
        tiles.downscale(images, 3)


def test_downscaled_tiles_upscale_back_onto_the_image():
    """Cut at 1/s, returned as cut (no network) and stitched with their scales: a flat image
    comes back exactly, a smooth one within what resampling costs."""
    eyes = smooth_eyes()
    scales = np.concatenate([tiles.tile_scales(GRID, (160, 160), RINGS)] * 2)
    assert set(scales.tolist()) == {1, 2, 4}
    slots = np.zeros((len(scales),) + GRID.out_shape + (3,), np.uint8)
    for scale in (1, 2, 4):
        level = tiles.level_grid(GRID, scale)
        chosen = np.flatnonzero(scales == scale)
        small = tiles.crop_halo(tiles.cut(tiles.downscale(eyes, scale), level), level)
        height, width = level.out_shape
        slots[chosen, :height, :width] = small[chosen]
    back = tiles.stitch(slots, GRID, scales=scales).astype(float)
    mse = ((back - eyes) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 30
    full = only_full_size(scales)
    np.testing.assert_array_equal(back[full], eyes[full])
    flat = np.full_like(slots, 90)
    assert (tiles.stitch(flat, GRID, scales=scales) == 90).all()


def test_the_full_size_centre_is_the_unfoveated_output(tiny_engine):
    eyes = smooth_eyes()
    bounds = np.tile(GRID.bounds(), (2, 1))
    stats = moments_to_stats(tiny_engine.measure(tiles.cut(eyes, GRID), GRID.margin, bounds))
    plain = FramePipeline(LocalBackend(tiny_engine), GRID, "tiny", stats=stats, deadline_s=None).process(eyes)
    fovea = FramePipeline(LocalBackend(tiny_engine), GRID, "tiny", stats=stats, deadline_s=None, rings=RINGS)
    result = fovea.process(eyes)
    assert result.complete and set(result.scales.tolist()) == {1, 2, 4}
    full = only_full_size(result.scales)
    assert 0.1 < full.mean() < 0.6
    out, reference = result.stitched(), plain.stitched()
    np.testing.assert_array_equal(out[full], reference[full])
    differences = np.abs(out.astype(int) - reference)[~full]
    assert 0 < differences.mean() < 40  # the periphery is stylised, at lower resolution
    # The next frame's statistics count a 1/s tile's pixels s^2 times: close to the unfoveated ones.
    np.testing.assert_allclose(fovea.stats, plain.stats if plain.stats is not None else stats, rtol=0.2, atol=0.05)


def test_gaze_moves_the_full_size_tiles(tiny_engine):
    pipe = FramePipeline(tiny_engine, GRID, "tiny", deadline_s=None, rings=RINGS)
    result = pipe.result(pipe.submit(smooth_eyes(), centres=np.array([[0.0, 0.0], [320.0, 320.0]])))
    per_eye = result.scales.reshape(2, -1)
    assert per_eye[0, 0] == 1 and per_eye[0, -1] == 4 and per_eye[1, -1] == 1 and per_eye[1, 0] == 4
    with pytest.raises(GridError, match="centres"):
        pipe.submit(smooth_eyes(), centres=np.zeros((1, 2)))


def test_a_late_scaled_tile_falls_back_to_the_raw_eye_never_black(tiny_engine):
    class Silent(LocalBackend):
        def poll(self, timeout=0.0):
            super().poll(timeout)
            return []

    pipe = FramePipeline(Silent(tiny_engine), GRID, "tiny", deadline_s=0.01, rings=RINGS)
    eyes = smooth_eyes()
    result = pipe.process(eyes)
    assert len(result.fallback) == len(result.tiles) and {f.source for f in result.fallback.values()} == {"raw"}
    back = result.stitched().astype(float)
    assert 10 * np.log10(255**2 / ((back - eyes) ** 2).mean()) > 30
