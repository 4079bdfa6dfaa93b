"""Reprojection with depth: exact correspondence between rendered views, occlusions found."""

from __future__ import annotations

import numpy as np
import pytest

from vrstyle.gl import transforms as tf
from vrstyle.reproject import View, correspondence, eye_distance, sample, to_pixels, to_world, warp_error

PROJECTION = tf.fov_projection(*tf.symmetric_fov(60.0, 4 / 3), near=0.1, far=50.0)


def window_depth(distance: np.ndarray) -> np.ndarray:
    """Window depth of eye-space distances under PROJECTION (the inverse of eye_distance)."""
    p22, p23 = PROJECTION[2, 2], PROJECTION[2, 3]
    return ((p23 / distance - p22) + 1) / 2


def wall_view(eye_x: float, distance: float = 4.0, shape=(60, 80)) -> View:
    """A camera at (eye_x, 0, 0) looking down -z at a wall at z = -distance."""
    view = np.linalg.inv(tf.translation(eye_x, 0, 0))
    return View(view, PROJECTION, np.full(shape, window_depth(np.array(distance)), np.float64))


def test_points_go_to_the_world_and_back_to_their_pixels():
    view = wall_view(0.3)
    pixels = np.array([[[10.5, 20.5], [79.5, 0.5]]])
    depth = np.array([[0.9, 0.99]])
    back, distance = to_pixels(view, to_world(view, pixels, depth))
    np.testing.assert_allclose(back, pixels, atol=1e-6)
    np.testing.assert_allclose(distance, eye_distance(depth, PROJECTION), rtol=1e-6)


def test_a_wall_seen_by_two_eyes_shifts_by_its_disparity():
    left, right = wall_view(-0.032), wall_view(0.032)
    pixels, visible = correspondence(left, right)
    focal = PROJECTION[0, 0] * 80 / 2  # px per unit of x / distance
    shift = pixels[..., 0] - (np.arange(80) + 0.5)[None, :]
    np.testing.assert_allclose(shift[visible], -focal * 0.064 / 4.0, atol=1e-6)
    assert 0.9 < visible.mean() < 1.0 and not visible[:, 0].any()  # the strip the right eye does not see


def test_a_hidden_surface_is_not_compared():
    """A near box in front of the wall, seen from the left eye only at some wall pixels: those are occluded."""
    left, right = wall_view(-0.5), wall_view(0.5)
    depth = right.depth.copy()
    depth[:, 30:50] = window_depth(np.array(1.0))  # something at 1 m in front of the right eye
    _, visible = correspondence(left, View(right.view, right.projection, depth))
    _, unoccluded = correspondence(left, right)
    assert visible.sum() < unoccluded.sum() - 20 * 60 * 0.5


def test_identical_views_have_no_warp_error_and_a_wrong_image_has_some():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), np.uint8)
    view = wall_view(0.0)
    error, seen = warp_error(image, image, view, view)
    assert error < 1e-9 and seen > 0.9
    assert warp_error(image, image[::-1].copy(), view, view)[0] > 50


@pytest.mark.parametrize("cubic", [False, True])
def test_samples_at_pixel_centres_are_the_pixels_and_ramps_stay_ramps(cubic):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    centres = np.stack(np.meshgrid(np.arange(4) + 0.5, np.arange(3) + 0.5), -1)
    np.testing.assert_allclose(sample(image, centres, cubic)[..., 0], image[..., 0], atol=1e-5)
    assert sample(image, np.array([[[2.0, 1.5]]]), cubic)[0, 0, 0] == pytest.approx(5.5)  # between 5 and 6


@pytest.mark.gl
def test_the_demo_scenes_eyes_agree_once_warped_with_its_depth(gl_context):
    """Rendered depth gives the exact correspondence: the raw eyes differ by a few grey levels
    unwarped and well under one warped."""
    from vrstyle.gl.scene import DemoScene

    scene = DemoScene(120, 160, keep_depth=True)
    views, projections = scene.eye_views(2.0)
    scene.render(views, projections, 2.0)
    eyes, depth = scene.read(), scene.read_depth()
    scene.close()
    assert depth.shape == (2, 120, 160) and 0 < depth.min() < depth.max() <= 1
    left, right = (View(views[e], projections[e], depth[e]) for e in (0, 1))
    error, seen = warp_error(eyes[0], eyes[1], left, right)
    assert seen > 0.9 and error < 1.0 < np.abs(eyes[0].astype(float) - eyes[1]).mean()


@pytest.mark.gl
def test_depth_is_only_kept_when_asked_for(gl_context):
    from vrstyle.gl.context import GLError
    from vrstyle.gl.scene import DemoScene

    scene = DemoScene(32, 32)
    with pytest.raises(GLError, match="keep_depth"):
        scene.read_depth()
    scene.close()


def test_the_compiled_stereo_coverage_is_the_reference_rule(gl_context):
    """The compiled pass covers what the numpy reference covers, pixel for pixel, on the demo
    scene (both eyes' top and bottom rows are exact ties), and leaves out the same tiles."""
    import tiles
    from vrstyle.gl.scene import DemoScene
    from vrstyle.kernels.coverage import covered_pixels
    from vrstyle.reproject import DEPTH_TOLERANCE, EDGE_SLACK, FILL_REACH, fill_disocclusions, stereo_skip

    with DemoScene(360, 320, keep_depth=True) as scene:
        views, projections = scene.eye_views(4.0)
        scene.render(views, projections, 4.0)
        depth = scene.read_depth()
    left, right = (View(views[e], projections[e], depth[e]) for e in (0, 1))
    pixels, seen = correspondence(right, left)
    _, seen = fill_disocclusions(pixels, seen, right.depth, FILL_REACH)
    reference = seen.copy()
    reference[1:] &= seen[:-1]
    reference[:-1] &= seen[1:]
    reference[:, 1:] &= seen[:, :-1]
    reference[:, :-1] &= seen[:, 1:]
    to_left_eye = left.view @ np.linalg.inv(right.projection @ right.view)
    covered = covered_pixels(right.depth, left.depth, to_left_eye, left.projection, DEPTH_TOLERANCE, FILL_REACH,
                             EDGE_SLACK)
    np.testing.assert_array_equal(covered, reference)
    assert 0.5 < covered.mean() < 1
    grid = tiles.plan_grid(360, 320, 32, 8, 4)
    skip = stereo_skip(grid, [left, right])
    assert not skip[:len(grid)].any() and skip[len(grid):].mean() > 0.5
    assert np.array_equal(skip[len(grid):], tiles.covered_tiles(grid, reference))


def test_stereo_coverage_refuses_bad_shapes():
    from vrstyle.kernels.coverage import covered_pixels

    wall = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="4x4"):
        covered_pixels(wall, wall, np.eye(3), np.eye(4), 0.01, 1)
    with pytest.raises(ValueError, match="reach"):
        covered_pixels(wall, wall, np.eye(4), np.eye(4), 0.01, -1)
