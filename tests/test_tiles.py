"""The standalone tiles library: grids, cutting, feathering, stitching."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tiles
from tiles import GridError, Stitcher, plan_grid

grids = st.builds(
    dict,
    height=st.integers(1, 90), width=st.integers(1, 90), tile=st.integers(4, 40),
    halo=st.integers(0, 12), overlap=st.integers(0, 6), align=st.sampled_from([1, 2, 4]),
)


def plan(g: dict) -> tiles.TileGrid:
    try:
        return plan_grid(g["height"], g["width"], g["tile"], min(g["halo"], g["tile"]), g["overlap"], g["align"])
    except GridError:
        assume(False)  # overlap wider than half a core: refused, tested below


def dense_weights(grid: tiles.TileGrid, ramp: str) -> np.ndarray:
    """(N, H, W): each tile's feather weights placed on the image, the plain definition."""
    out_h, out_w = grid.out_shape
    placed = np.zeros((len(grid), grid.height + 2 * out_h, grid.width + 2 * out_w))
    for tile in grid.tiles():
        y, x = tile.y - grid.overlap + out_h, tile.x - grid.overlap + out_w
        placed[tile.index, y:y + out_h, x:x + out_w] = tiles.tile_weights(grid, tile.index, ramp)
    return placed[:, out_h:out_h + grid.height, out_w:out_w + grid.width]


def reference_stitch(outs: np.ndarray, grid: tiles.TileGrid, ramp: str, present: list[int]) -> np.ndarray:
    """sum(w_i * tile_i) / sum(w_i) over the present tiles of one image, in float64, with dense arrays."""
    out_h, out_w = grid.out_shape
    weights = dense_weights(grid, ramp)
    total = np.zeros((grid.height + 2 * out_h, grid.width + 2 * out_w, outs.shape[-1]))
    for index in present:
        tile = grid.tile(index)
        y, x = tile.y - grid.overlap + out_h, tile.x - grid.overlap + out_w
        total[y:y + out_h, x:x + out_w] += tiles.tile_weights(grid, index, ramp)[..., None] * outs[index]
    total = total[out_h:out_h + grid.height, out_w:out_w + grid.width]
    weight = weights[present].sum(axis=0)[..., None]
    return np.where(weight > 0, total / np.maximum(weight, 1e-12), 0.0)


@settings(max_examples=150, deadline=None)
@given(grids, st.sampled_from(tiles.RAMPS), st.sampled_from([np.float32, np.uint8]), st.data())
def test_stitcher_equals_the_weighted_mean(g, ramp, dtype, data):
    """Any subset of tiles, in any order, any row band: the band of sum(w t) / sum(w), 0 where none reached."""
    grid = plan(g)
    outs = np.random.default_rng(4).integers(0, 256, (len(grid), *grid.out_shape, 2)).astype(dtype)
    present = data.draw(st.lists(st.sampled_from(range(len(grid))), unique=True))
    top = data.draw(st.integers(0, grid.height - 1))
    bottom = data.draw(st.integers(top + 1, grid.height))
    stitcher = Stitcher(grid, channels=2, ramp=ramp, rows=(top, bottom), dtype=dtype)
    for index in present:
        stitcher.add(index, outs[index])
    got = stitcher.result()[0]
    expected = reference_stitch(outs, grid, ramp, present)[top:bottom]
    assert got.dtype == dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, np.rint(expected) if dtype == np.uint8 else expected, rtol=0,
                               atol=1 if dtype == np.uint8 else 1e-3)


@settings(max_examples=150, deadline=None)
@given(grids, st.integers(1, 2), st.sampled_from(tiles.RAMPS))
def test_identity_roundtrip_numpy(g, batch, ramp):
    """Cut, identity model, crop, stitch gives back the image exactly, for any grid."""
    grid = plan(g)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, grid.height, grid.width, 3), dtype=np.uint8)
    pieces = tiles.cut(images, grid)
    assert pieces.shape == (batch * len(grid), *grid.in_shape, 3)
    restored = tiles.stitch(tiles.crop_halo(pieces, grid), grid, ramp)
    np.testing.assert_array_equal(restored, images)


@settings(max_examples=60, deadline=None)
@given(grids)
def test_identity_roundtrip_torch(g):
    grid = plan(g)
    images = torch.rand(2, 3, grid.height, grid.width)
    restored = tiles.stitch(tiles.crop_halo(tiles.cut(images, grid), grid), grid)
    torch.testing.assert_close(restored, images, rtol=0, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(grids, st.sampled_from([(3, np.float32), (3, np.uint8), (4, np.uint8), (2, np.float32), (1, np.uint8)]))
def test_numpy_and_torch_cut_the_same_pixels(g, layout):
    """numpy's compiled cut (rows streamed, borders mirrored pixel by pixel, lines that start
    inside a pixel) against torch's indexing."""
    grid = plan(g)
    channels, dtype = layout
    image = (np.random.default_rng(1).random((grid.height, grid.width, channels)) * 255).astype(dtype)
    from_numpy = tiles.cut(image, grid)
    from_torch = tiles.cut(torch.from_numpy(image).permute(2, 0, 1), grid).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(from_numpy, from_torch)


@settings(max_examples=100, deadline=None)
@given(grids, st.sampled_from([(3, np.uint8), (4, np.uint8), (1, np.float32)]), st.integers(1, 2))
def test_windows_are_the_cut_tiles(g, layout, batch):
    """Every tile and every run of tiles from the padded frame's windows is what cut copies out,
    and the block-copy padding (index arrays where a margin is wider than the image) is torch's."""
    grid = plan(g)
    channels, dtype = layout
    images = (np.random.default_rng(2).random((batch, grid.height, grid.width, channels)) * 255).astype(dtype)
    windows, pieces = tiles.cut_windows(images, grid), tiles.cut(images, grid)
    by_torch = tiles.pad_frame(torch.from_numpy(images).permute(0, 3, 1, 2), grid).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(windows.padded, by_torch)
    assert windows.shape == pieces.shape and len(windows) == len(pieces)
    for k in range(len(pieces)):
        np.testing.assert_array_equal(windows[k], pieces[k])
    for first in range(len(pieces)):
        np.testing.assert_array_equal(windows[first:first + 2], pieces[first:first + 2])
    np.testing.assert_array_equal(windows[::2], pieces[::2])


def test_windows_are_views_read_only_and_padded_in_place():
    """A run within a grid row shares the padded frame's memory; a reused array is padded into;
    a wrong one or a torch tensor is refused."""
    grid = plan_grid(90, 130, tile=48, halo=8, overlap=4)
    first, second = (np.random.default_rng(seed).integers(0, 256, (2, 90, 130, 4), dtype=np.uint8) for seed in (0, 1))
    windows = tiles.cut_windows(first, grid)
    row = windows[0:grid.cols]
    assert np.shares_memory(row, windows.padded) and not row.flags.writeable
    again = tiles.cut_windows(second, grid, out=windows.padded)
    assert again.padded is windows.padded
    np.testing.assert_array_equal(again[:], tiles.cut(second, grid))
    with pytest.raises(GridError, match="cannot write"):
        tiles.pad_frame(second, grid, out=windows.padded[1:])
    with pytest.raises(GridError, match="numpy"):
        tiles.cut_windows(torch.zeros(4, 90, 130), grid)


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.1.0",
                    reason="np.pad drops values when it reflects more than once before numpy 2.1 (numpy#25926)")
@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(-70, 70), st.integers(1, 80))
def test_reflect_indices_match_numpy_pad(length, start, count):
    """Repeated reflection, as numpy's 'reflect' padding does it, for pads of any size."""
    axis = np.arange(length)
    pad = max(0, -start), max(0, start + count - length)
    expected = np.pad(axis, pad, mode="reflect")[start + pad[0]:start + pad[0] + count]
    np.testing.assert_array_equal(tiles.reflect_indices(length, start, count), expected)


@settings(max_examples=60, deadline=None)
@given(grids, st.integers(0, 2**32 - 1))
def test_tiles_left_out_where_a_mask_covers_them_still_reach_every_other_pixel(g, seed):
    """A covered tile's core lies wholly in the mask; stitching only the others reaches every
    pixel outside it at full value (here 200), none black, also in covered tiles' overlaps."""
    grid = plan(g)
    rng = np.random.default_rng(seed)
    mask = np.ones((grid.height, grid.width), bool)
    for _ in range(rng.integers(0, 4)):  # a few holes
        y, x = rng.integers(0, grid.height), rng.integers(0, grid.width)
        mask[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = False
    covered = tiles.covered_tiles(grid, mask)
    assert covered.all() == mask.all()
    outs = np.full((len(grid),) + grid.out_shape + (1,), 200, np.uint8)
    stitcher = Stitcher(grid, 1, 1, dtype=np.uint8)
    for index in np.flatnonzero(~covered):
        stitcher.add(int(index), outs[index])
    assert (stitcher.result()[0, ..., 0][~mask] == 200).all()
    with pytest.raises(GridError, match="mask is"):
        tiles.covered_tiles(grid, mask[1:])


@pytest.mark.parametrize("ramp", tiles.RAMPS)
def test_feather_weights_are_a_partition_of_unity(ramp):
    grid = plan_grid(200, 300, tile=64, halo=8, overlap=12)
    total = dense_weights(grid, ramp).sum(axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_blend_mixes_neighbours_across_the_overlap():
    """Tile values differ: pixels in the overlap band lie strictly between them."""
    grid = plan_grid(16, 32, tile=16, halo=0, overlap=4, align=1)
    stitcher = Stitcher(grid, channels=1)
    stitcher.add(0, np.zeros((*grid.out_shape, 1), np.float32))
    stitcher.add(1, np.full((*grid.out_shape, 1), 100, np.float32))
    row = stitcher.result()[0, 8, :, 0]
    assert (row[:12] == 0).all() and (row[20:] == 100).all()
    assert (np.diff(row[12:20]) > 0).all() and 0 < row[12] < row[19] < 100


def test_banded_stitching_equals_whole():
    grid = plan_grid(100, 70, tile=24, halo=4, overlap=4)
    outs = np.random.default_rng(2).random((len(grid), *grid.out_shape, 3)).astype(np.float32)
    whole = tiles.stitch(outs, grid)[0]
    for top, bottom in [(0, 30), (30, 31), (31, 100)]:
        band = Stitcher(grid, rows=(top, bottom))
        for index, tile in enumerate(outs):
            band.add(index, tile)
        np.testing.assert_allclose(band.result()[0], whole[top:bottom], atol=1e-6)


def test_missing_tiles_are_reported_and_unreached_pixels_are_zero():
    grid = plan_grid(8, 8, tile=4, halo=0, overlap=0, align=1)
    stitcher = Stitcher(grid, batch=2, channels=1, dtype=np.uint8)
    stitcher.add(5, np.full((4, 4, 1), 7, np.uint8))
    assert stitcher.missing() == [0, 1, 2, 3, 4, 6, 7]
    out = stitcher.result()
    assert out[1, :4, 4:].min() == 7 and out.sum() == 7 * 16


def test_cut_subset_matches_full_cut():
    grid = plan_grid(50, 60, tile=16, halo=8, overlap=2)
    image = np.random.default_rng(3).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tiles.cut(image, grid, [2, 7]), tiles.cut(image, grid)[[2, 7]])


def test_cut_into_a_reused_array():
    """A second frame cut into the first's array gives what a fresh cut gives, whatever the
    array's alignment to a cache line; a wrong or non-contiguous array is refused."""
    grid = tiles.plan_grid(90, 130, tile=48, halo=8, overlap=4)
    first, second = (np.random.default_rng(seed).integers(0, 256, (2, 90, 130, 4), dtype=np.uint8) for seed in (0, 1))
    reused = tiles.cut(first, grid)
    assert tiles.cut(second, grid, out=reused) is reused
    np.testing.assert_array_equal(reused, tiles.cut(second, grid))
    buffer = np.zeros(reused.nbytes + 64, np.uint8)
    for shift in (1, 4, 36):
        shifted = buffer[shift:shift + reused.nbytes].reshape(reused.shape)
        np.testing.assert_array_equal(tiles.cut(second, grid, out=shifted), reused)
    with pytest.raises(tiles.GridError, match="cannot write"):
        tiles.cut(second, grid, out=reused[1:])
    with pytest.raises(tiles.GridError, match="not C-contiguous"):
        tiles.cut(second, grid, out=np.zeros(reused.shape[:-1] + (8,), np.uint8)[..., ::2])


@pytest.mark.parametrize("layout", [(4, np.uint8), (3, np.uint8), (3, np.float32)])
def test_copy_frames_is_a_copy_whatever_the_layout_and_alignment(layout):
    """The streaming frame copy (rings, result slots) equals numpy's for whole frames, views
    (rows flipped, a tile's core) and targets starting anywhere in a cache line; a target of
    another shape is refused."""
    channels, dtype = layout
    frames = (np.random.default_rng(7).random((2, 37, 91, channels)) * 255).astype(dtype)
    buffer = np.zeros(frames.nbytes + 64, np.uint8)
    for source in (frames, frames[:, ::-1], frames[:, 5:30, 9:80]):
        for shift in (0, frames.itemsize, 9 * frames.itemsize):  # bytes into a cache line
            out = buffer[shift:shift + source.nbytes].view(dtype).reshape(source.shape)
            assert tiles.copy_frames(source, out) is out
            np.testing.assert_array_equal(out, source)
    with pytest.raises(tiles.GridError, match="cannot write"):
        tiles.copy_frames(frames, np.empty((2, 37, 90, channels), dtype))


@pytest.mark.parametrize("layout", [(4, np.uint8), (3, np.uint8), (3, np.float32), (1, np.float64)])
def test_cut_at_headset_margins_matches_indexing(layout):
    """The default 72 px margin and tiles running 88 px past the image's right edge: whole
    cache lines streamed forward, reversed (the mirrored columns) and gathered (across the
    edge), every one checked against torch's indexing."""
    channels, dtype = layout
    grid = tiles.plan_grid(300, 500, tile=192, halo=56, overlap=16)
    image = (np.random.default_rng(6).random((2, 300, 500, channels)) * 255).astype(dtype)
    by_torch = tiles.cut(torch.from_numpy(image).permute(0, 3, 1, 2), grid).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(tiles.cut(image, grid), by_torch)


@pytest.mark.parametrize("view", ["flipped rows", "three of four channels", "every other column"])
def test_cut_views_of_frames(view):
    """Frames that are views (rows not contiguous, pixels with gaps) cut as their copies do."""
    frame = np.random.default_rng(5).integers(0, 256, (2, 90, 260, 4), dtype=np.uint8)
    image = {"flipped rows": frame[:, ::-1, :130], "three of four channels": frame[:, :, :130, :3],
             "every other column": frame[:, :, ::2]}[view]
    grid = tiles.plan_grid(90, 130, tile=48, halo=8, overlap=4)
    np.testing.assert_array_equal(tiles.cut(image, grid), tiles.cut(np.ascontiguousarray(image), grid))
    np.testing.assert_array_equal(tiles.pad_frame(image, grid), tiles.pad_frame(np.ascontiguousarray(image), grid))


def test_pad_frame_holds_every_tile():
    """Each tile is the padded frame's window at its aligned offset: the basis of tiled == whole."""
    grid = plan_grid(37, 53, tile=16, halo=6, overlap=3)
    image = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    padded, pieces = tiles.pad_frame(image, grid), tiles.cut(image, grid)
    th, tw = grid.in_shape
    for tile in grid.tiles():
        np.testing.assert_array_equal(pieces[tile.index], padded[tile.y:tile.y + th, tile.x:tile.x + tw])
    np.testing.assert_array_equal(tiles.crop_frame(padded, grid), image)


def test_planner_balances_and_aligns():
    grid = plan_grid(2208, 2064, tile=512)
    assert (grid.rows, grid.cols) == (5, 5)
    assert grid.core_h % 4 == 0 and grid.core_w % 4 == 0
    assert 0 <= grid.rows * grid.core_h - 2208 < 4 * grid.rows
    single = plan_grid(300, 200, tile=1024, halo=56)
    assert (len(single), single.core_h, single.core_w) == (1, 300, 200)


@pytest.mark.parametrize("workers,tiles_per_eye", [(1, 1), (2, 2), (3, 3), (4, 4), (6, 6)])
def test_plan_for_workers(workers, tiles_per_eye):
    grid = tiles.plan_grid_for_workers(2208, 2064, workers)
    assert len(grid) == tiles_per_eye
    assert grid.rows * grid.core_h >= 2208 and grid.cols * grid.core_w >= 2064


@pytest.mark.parametrize("args,message", [
    (dict(height=0, width=10), "image height must be a positive integer"),
    (dict(height=10, width=10, tile=0), "tile height must be a positive integer"),
    (dict(height=100, width=100, tile=32, halo=40), "halo (40 px) is larger than the tile"),
    (dict(height=100, width=100, tile=32, halo=-1), "halo must be a non-negative integer"),
    (dict(height=100, width=100, tile=32, overlap=20, halo=0), "overlap (20 px) is wider than half"),
    (dict(height=100, width=100, tile=2.5), "must be a positive integer"),
])
def test_nonsense_geometry_is_refused(args, message):
    with pytest.raises(GridError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_grid(**args)


def test_wrong_image_size_is_refused():
    grid = plan_grid(64, 64, tile=32, halo=8)
    with pytest.raises(GridError, match="planned for 64x64"):
        tiles.cut(np.zeros((60, 64, 3), np.uint8), grid)


def test_tiles_imports_nothing_of_vrstyle_gl_or_zmq():
    """tiles is standalone: its hard dependencies are numpy and numba (whose llvmlite writes the
    streaming copy); torch is imported lazily."""
    allowed = {"numpy", "numba", "llvmlite", "torch", "tiles", "__future__", "typing", "functools", "dataclasses", "math"}
    for path in Path(tiles.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_a_whole_image_loads_no_compiler_and_a_seamed_grid_does():
    """numba costs about 50 MB and most of a second to import, a fifth of a small photo's
    stylisation: cutting and stitching a whole image in one tile must not load it."""
    code = """if True:
        import sys, numpy as np, tiles
        image = np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3)
        def roundtrip(grid):
            stitcher = tiles.Stitcher(grid, dtype=np.uint8)
            for index, tile in enumerate(tiles.crop_halo(tiles.cut(image, grid), grid)):
                stitcher.add(index, tile)
            assert (stitcher.result()[0] == image).all()
            return 'numba' in sys.modules
        print(roundtrip(tiles.plan_grid(30, 50, (30, 50), 0, 0, 1)), roundtrip(tiles.plan_grid(30, 50, 16, 4, 2, 1)))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
