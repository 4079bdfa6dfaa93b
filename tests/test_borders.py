"""Tiles equal the plain network on the bare image, borders and statistics included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiles
from vrstyle.errors import VrstyleError
from vrstyle.models import NormContext, StyleEngine
from vrstyle.models.students import StudentNet
from vrstyle.models.transformer import TransformerNet
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.pipeline import FramePipeline
from vrstyle.stylize import exact_stats, measure_stats, stylize_image, stylize_untiled
from vrstyle.transport import protocol as P

GEOMETRIES = [  # height, width, tile, halo, overlap: odd sizes, tiles smaller than the halo's reach
    (97, 130, 48, 32, 8),
    (64, 64, 32, 32, 0),
    (150, 203, 64, 40, 16),
    (211, 190, 96, 36, 8),
    (61, 45, 32, 32, 4),
]


@pytest.fixture(scope="module")
def nets(random_weights):
    torch.manual_seed(3)
    nets = {"float": TransformerNet(width=8, blocks=1), "binary": StudentNet(width=8, blocks=1)}
    for net in nets.values():
        random_weights(net)
        with torch.no_grad():  # outputs spread over 0..255 like a style's, not all near 0
            net.deconv3.conv2d.weight.mul_(150)
            net.deconv3.conv2d.bias.fill_(128)
    return {kind: StyleEngine(net) for kind, net in nets.items()}


def photo_like(height: int, width: int, seed: int = 0, eyes: int = 1) -> np.ndarray:
    """Smooth colour fields plus grain: borders differ from their reflections, as in photos."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(eyes, 3, 4, 5, generator=generator) * 255
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    image = (image + torch.rand(eyes, 3, height, width, generator=generator) * 40 - 20).clamp(0, 255)
    return image.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()


def assert_same_image(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float rounding: a grey level at most, at a few pixels in a thousand at most
    (convolutions of different sizes sum in different orders)."""
    difference = np.abs(actual.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).mean())


def whole_image(engine: StyleEngine, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plain network on bare images (normalised jointly) and its statistics, in uint8."""
    capture = torch.empty(3, engine.stats_channels)
    with torch.no_grad():
        engine.model(engine.to_input(images), NormContext(capture=capture))
    stats = capture[1:].numpy()
    height, width = images.shape[1:3]
    return engine.stylize(images, stats)[:, :height, :width], stats


@pytest.mark.parametrize("kind", ["float", "binary"])
@pytest.mark.parametrize("height,width,tile,halo,overlap", GEOMETRIES)
def test_tiles_with_bounds_equal_the_plain_network(nets, kind, height, width, tile, halo, overlap):
    """Given the image's statistics, tiles reproduce the bare image's output at every pixel, and
    measure those same statistics; without their bounds, the borders differ."""
    engine = nets[kind]
    image = photo_like(height, width)
    whole, stats = whole_image(engine, image)
    grid = tiles.plan_grid(height, width, tile, halo, overlap)
    assert len(grid) > 1
    pieces, bounds = tiles.cut(image[0], grid), grid.bounds()
    out, moments = engine.stylize_and_measure(pieces, stats, grid.halo, grid.margin, bounds)
    assert_same_image(tiles.stitch(out, grid)[0], whole[0])
    np.testing.assert_allclose(moments_to_stats(combine_moments(moments)), stats, rtol=1e-4, atol=1e-3)
    unbounded = tiles.stitch(engine.stylize(pieces, stats, grid.halo), grid)[0]
    assert np.abs(unbounded.astype(int) - whole[0]).max() > 2


def test_exact_stats_are_the_whole_images(nets):
    """The layer-by-layer passes give the bare image's statistics; the sample does not."""
    engine = nets["float"]
    image = photo_like(150, 203, seed=1)
    whole, stats = whole_image(engine, image)
    grid = tiles.plan_grid(150, 203, 48, 32, 8)
    sample = measure_stats(engine, image[0], grid, count=3)
    assert np.abs(sample - stats).max() > 1e-2
    exact = exact_stats(engine, image[0], grid, sample, batch=5)
    np.testing.assert_allclose(exact, stats, rtol=1e-4, atol=1e-3)
    assert_same_image(stylize_image(engine, image[0], grid, stats_tiles=3, exact=True), whole[0])
    np.testing.assert_array_equal(stylize_untiled(engine, image[0]), whole[0])


def test_both_eyes_of_a_stream_equal_the_plain_network(nets):
    """A stereo frame through the pipeline, with the frame's statistics, equals each bare eye."""
    engine = nets["binary"]
    eyes = photo_like(100, 124, seed=2, eyes=2)
    whole, stats = whole_image(engine, eyes)
    with FramePipeline.plan(engine, 100, 124, "tiny", tile=48, halo=32, overlap=8, stats=stats,
                            deadline_s=None) as pipe:
        result = pipe.process(eyes)
    assert len(result.grid) > 1 and result.complete
    assert_same_image(result.stitched(), whole)


def test_plan_grid_aligns_the_margin():
    """Tiles start on the network's phase whatever halo is asked for."""
    grid = tiles.plan_grid(100, 100, 48, halo=10, overlap=3)
    assert grid.margin % 4 == 0 and grid.halo >= 10
    assert (grid.bounds()[:, [0, 2]] % 4 == 0).all()


def test_bad_bounds_are_refused(nets):
    """Bounds off the network's phase or leaving no image fail with one clear error."""
    engine = nets["float"]
    pieces = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(VrstyleError, match="phase"):
        engine.stylize(pieces, None, bounds=np.array([[2, 64, 0, 64], [0, 64, 0, 64]]))
    with pytest.raises(VrstyleError, match="2 tile bounds for 1 tiles"):
        engine.stylize(pieces[:1], None, bounds=np.zeros((2, 4), int))
    batch = P.TileBatch("tiny", pieces, bounds=np.array([[0, 64, 0, 64], [64, 80, 0, 64]], np.int32))
    frames = P.request_frames(batch.header(1), pieces, None, None, batch.bounds)
    with pytest.raises(P.ProtocolError, match="leave no image"):
        P.parse_request(frames)
    with pytest.raises(P.ProtocolError, match="bounds part has"):
        P.parse_request(frames[:-1] + [b"\0" * 8])
