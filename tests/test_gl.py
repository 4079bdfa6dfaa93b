"""The GL half of stitching and the GL plumbing: shaders, contexts, compositor, demo scene.

All run on a real headless OpenGL context (EGL surfaceless; Mesa llvmpipe in CI).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import tiles
from edgeties import edge_ties
from gltrack import NameTracker

pytestmark = pytest.mark.gl


def cpu_stitch(stack: np.ndarray, grid: tiles.TileGrid, ramp: str, present) -> np.ndarray:
    """tiles.Stitcher over the present tiles' RGB, rounded to uint8: the reference."""
    stitcher = tiles.Stitcher(grid, batch=2, channels=3, ramp=ramp, dtype=np.uint8)
    for index in present:
        stitcher.add(index, stack[index, ..., :3])
    return stitcher.result()


def gl_stitch(compositor, stack: np.ndarray, present, targets=None) -> np.ndarray:
    compositor.upload(stack[present], present)
    compositor.composite(targets)
    return np.stack([compositor.read(0), compositor.read(1)])


PROGRAMS = pytest.importorskip("vrstyle.gl.shaders", reason="needs PyOpenGL (vrstyle[gl])").PROGRAMS


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_program_compiles_and_links(gl_context, name):
    from vrstyle.gl.shaders import Program

    program = Program(name)
    assert program.id > 0 and program.uniforms  # linked and has its inputs
    program.close()


def test_every_shader_file_belongs_to_a_program():
    from vrstyle.gl.shaders import INCLUDE, PROGRAMS, shader_dir

    used = {name for files in PROGRAMS.values() for name in files}
    included = {m.group(1) for name in used for m in INCLUDE.finditer((shader_dir() / name).read_text())}
    on_disk = {p.name for p in shader_dir().iterdir() if p.suffix in (".vert", ".frag", ".glsl")}
    assert on_disk == used | included


def test_compile_error_names_the_file_and_quotes_the_driver(gl_context, tmp_path):
    from vrstyle.gl.context import GLError
    from vrstyle.gl.shaders import Program

    broken = tmp_path / "broken.frag"
    broken.write_text("#version 330 core\nout vec4 colour;\nvoid main() {\n    colour = vec4(undeclared, 1.0);\n}\n")
    with pytest.raises(GLError) as caught:
        Program("fullscreen.vert", broken)
    message = str(caught.value)
    assert "broken.frag" in message and "undeclared" in message and "\n" not in message
    assert "broken.frag:4" in message  # the driver's line number, mapped to the file


def test_error_in_an_included_file_names_that_file(gl_context, tmp_path):
    from vrstyle.gl.context import GLError
    from vrstyle.gl.shaders import Program

    (tmp_path / "helpers.glsl").write_text("float helper() {\n    return nonsense;\n}\n")
    (tmp_path / "main.frag").write_text('#version 330 core\n#include "helpers.glsl"\nout vec4 c;\n'
                                        "void main() { c = vec4(helper()); }\n")
    with pytest.raises(GLError, match=r"helpers\.glsl:2"):
        Program("fullscreen.vert", tmp_path / "main.frag")
    (tmp_path / "main.frag").write_text('#version 330 core\n#include "absent.glsl"\nvoid main() {}\n')
    with pytest.raises(GLError, match="cannot read shader .*absent.glsl"):
        Program("fullscreen.vert", tmp_path / "main.frag")


def test_link_error_names_both_files(gl_context, tmp_path):
    from vrstyle.gl.context import GLError
    from vrstyle.gl.shaders import Program

    (tmp_path / "needs.frag").write_text("#version 330 core\nin vec3 uv;  // fullscreen.vert writes a vec2\n"
                                         "out vec4 c;\nvoid main() { c = vec4(uv, 1.0); }\n")
    with pytest.raises(GLError, match=r"fullscreen\.vert \+ needs\.frag failed to link"):
        Program("fullscreen.vert", tmp_path / "needs.frag")


@pytest.mark.parametrize("ramp", tiles.RAMPS)
@pytest.mark.parametrize("height, width, tile, overlap", [
    (64, 64, 64, 8),      # one tile: weights are 1 everywhere (image borders)
    (100, 130, 40, 6),    # 3x4 grid, last row and column overhang the image
    (97, 61, 32, 5),      # odd sizes
    (72, 200, 50, 0),     # no overlap: hard edges
    (90, 90, 30, 15),     # overlap = half the core: bands meet
])
def test_gl_stitch_equals_cpu_stitch(gl_context, height, width, tile, overlap, ramp):
    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(height, width, tile=tile, halo=4, overlap=overlap, align=2)
    stack = np.random.default_rng(height * width).integers(0, 256, (2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    compositor = Compositor(grid, ramp)
    everything = np.arange(len(stack))
    result = gl_stitch(compositor, stack, everything)
    compositor.close()
    expected = cpu_stitch(stack, grid, ramp, everything)
    assert np.abs(result.astype(int) - expected).max() <= 1
    assert (result.astype(int) != expected).mean() < 0.05  # rounding ties only, not a systematic offset


@pytest.mark.parametrize("ramp", tiles.RAMPS)
@pytest.mark.parametrize("height, width, tile, overlap", [(320, 320, 64, 4), (200, 296, 48, 16), (150, 100, 80, 0)])
def test_gl_upscales_foveated_tiles_as_the_cpu_stitch_does(gl_context, height, width, tile, overlap, ramp):
    """Scale-2 and scale-4 tiles in their layers' corners, upscaled by the texture filter."""
    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(height, width, tile=tile, halo=8, overlap=overlap, core_align=16)
    scales = np.concatenate([tiles.tile_scales(grid, (height / 2, width / 2), (0.2, 0.5)),
                             tiles.tile_scales(grid, (0, 0), (0.2, 0.5))])
    assert len(set(scales.tolist())) > 1
    rng = np.random.default_rng(height + width)
    stack = rng.integers(0, 256, (len(scales),) + grid.out_shape + (3,), np.uint8)
    compositor = Compositor(grid, ramp)
    present = np.flatnonzero(rng.random(len(scales)) < 0.9)
    compositor.upload(stack[present], present, scales[present])
    compositor.composite()
    result = np.stack([compositor.read(0), compositor.read(1)]).astype(int)
    compositor.close()
    expected = cpu_stitch(tiles.expand_tiles(stack, grid, scales), grid, ramp, present)
    assert np.abs(result - expected).max() <= 2
    assert (result != expected).mean() < 0.2


def test_foveated_tiles_need_a_grid_that_divides_down(gl_context):
    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(72, 72, tile=40, halo=4, overlap=2)
    compositor = Compositor(grid)
    stack = np.zeros((2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    with pytest.raises(tiles.GridError, match="core_align"):
        compositor.upload(stack, scales=np.full(len(stack), 4))
    with pytest.raises(tiles.GridError, match="one scale"):
        compositor.upload(stack, scales=np.full(len(stack), 3))
    compositor.close()


def test_grid_overlay_tints_foveated_and_fallen_back_tiles(gl_context):
    """Left eye's four tiles: full size, 1/2, 1/4, fell back: untinted, light blue, blue, red."""
    from OpenGL import GL

    from vrstyle.gl.display import EyeDisplay, ViewMode
    from vrstyle.gl.textures import Framebuffer, create_texture, read_pixels, upload_image

    grid = tiles.plan_grid(64, 64, tile=32, halo=0, overlap=0)
    eye = create_texture(64, 64)
    upload_image(eye, np.full((64, 64, 3), 128, np.uint8))
    target = create_texture(64, 64)
    framebuffer = Framebuffer()
    framebuffer.attach(target)
    display = EyeDisplay()
    fallback = np.zeros(8, bool)
    fallback[3] = True
    display.draw((eye, eye), (64, 64), (64, 64), ViewMode.LEFT, grid, fallback, np.array([1, 2, 4, 1] * 2))
    image = read_pixels(64, 64).astype(int)
    GL.glUseProgram(0)  # the display leaves its program in use; later tests restore what they found
    display.close()
    framebuffer.close()
    GL.glDeleteTextures([eye, target])
    centres = [image[8:24, 8:24].mean(axis=(0, 1)) for image in (image[:32, :32], image[:32, 32:], image[32:, :32],
                                                                   image[32:, 32:])]
    plain, half, quarter, late = centres
    np.testing.assert_allclose(plain, 128, atol=1)
    assert half[2] > plain[2] + 5 and quarter[2] > half[2] + 5 and quarter[0] < half[0] < plain[0]
    assert late[0] > plain[0] + 30 and late[2] < plain[2]


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_gl_stitch_equals_cpu_stitch_random(gl_context, data):
    """Random grids, channels, ramps and missing tiles (pixels no tile reaches come out 0)."""
    from vrstyle.gl.compositor import Compositor

    height, width = data.draw(st.integers(8, 120)), data.draw(st.integers(8, 120))
    tile = data.draw(st.integers(8, 80))
    overlap = data.draw(st.integers(0, 12))
    try:
        grid = tiles.plan_grid(height, width, tile=tile, halo=0, overlap=overlap, align=data.draw(st.sampled_from([1, 4])))
    except tiles.GridError:
        return  # overlap too wide for this core: the planner refuses, nothing to stitch
    ramp = data.draw(st.sampled_from(tiles.RAMPS))
    channels = data.draw(st.sampled_from([3, 4]))
    present = np.flatnonzero(data.draw(st.lists(st.booleans(), min_size=2 * len(grid), max_size=2 * len(grid))))
    seed = data.draw(st.integers(0, 2**31))
    stack = np.random.default_rng(seed).integers(0, 256, (2 * len(grid),) + grid.out_shape + (channels,), np.uint8)
    compositor = Compositor(grid, ramp)
    result = gl_stitch(compositor, stack, present)
    compositor.close()
    assert np.abs(result.astype(int) - cpu_stitch(stack, grid, ramp, present)).max() <= 1


def test_missing_tiles_leave_black_holes_and_the_rest_blends(gl_context):
    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(60, 60, tile=20, halo=0, overlap=4, align=1)
    stack = np.full((2 * len(grid),) + grid.out_shape + (3,), 200, np.uint8)
    compositor = Compositor(grid)
    result = gl_stitch(compositor, stack, np.array([0, 9 + 4]))  # left eye: top-left tile; right eye: the centre
    compositor.close()
    assert (result[0, :20, :20] == 200).all() and (result[0, 30:] == 0).all()
    assert (result[1, 20:40, 20:40] == 200).all() and (result[1, :10] == 0).all()


def test_srgb_and_array_targets_hold_the_stitched_bytes(gl_context):
    """sRGB swapchain-like targets (SRGB8_ALPHA8) and layers of a larger array texture, as OpenXR gives."""
    from OpenGL import GL

    from vrstyle.gl.compositor import Compositor
    from vrstyle.gl.textures import create_texture

    grid = tiles.plan_grid(50, 70, tile=32, halo=0, overlap=6, align=1)
    stack = np.random.default_rng(3).integers(0, 256, (2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    expected = cpu_stitch(stack, grid, "cosine", np.arange(len(stack)))
    compositor = Compositor(grid, "cosine")
    srgb = [create_texture(grid.width, grid.height, GL.GL_SRGB8_ALPHA8) for _ in range(2)]
    array = create_texture(grid.width + 10, grid.height + 6, GL.GL_SRGB8_ALPHA8, layers=2)
    for targets in (srgb, [(array, 0), (array, 1)]):
        result = gl_stitch(compositor, stack, np.arange(len(stack)), targets)
        assert np.abs(result.astype(int) - expected).max() <= 1
    compositor.close()
    GL.glDeleteTextures([*srgb, array])


def test_eye_textures_read_upright_into_a_reused_array(gl_context):
    """An sRGB eye texture reads back its bytes exactly and a linear one within a grey level,
    upright, as a view of the array read into; an array that does not fit is one clear error."""
    from OpenGL import GL

    from vrstyle.gl.context import GLError
    from vrstyle.gl.textures import create_texture
    from vrstyle.xr.textures import read_texture, write_texture

    image = np.random.default_rng(5).integers(0, 256, (30, 44, 3), np.uint8)
    into = np.empty_like(image)
    for internal, tolerance in ((GL.GL_SRGB8_ALPHA8, 0), (GL.GL_RGBA16F, 1)):
        texture = create_texture(44, 30, internal)
        write_texture(texture, image)
        upright = read_texture(texture, into)
        assert np.shares_memory(upright, into)
        assert np.abs(upright.astype(int) - image).max() <= tolerance
        np.testing.assert_array_equal(read_texture(texture), upright)
        with pytest.raises(GLError, match="cannot read a 44x30 texture"):
            read_texture(texture, into[1:])
        GL.glDeleteTextures([texture])


def _stereo_views(height: int, width: int, time: float = 1.5) -> list:
    """Both eyes' views with depth of the demo scene at ``time``."""
    from vrstyle.gl.scene import DemoScene
    from vrstyle.reproject import View

    with DemoScene(height, width, samples=0, keep_depth=True) as scene:
        views, projections = scene.eye_views(time)
        scene.render(views, projections, time)
        depth = scene.read_depth()
    return [View(views[eye], projections[eye], depth[eye]) for eye in (0, 1)]


def test_gpu_reprojection_is_the_reference_correspondence(gl_context):
    """The shader puts the left eye's pixels into the right eye exactly where (and as)
    vrstyle.reproject's float64 reference does, or blends them in at a weight, keeps the
    right's own pixels elsewhere, and counts what it drew; a depth map of the wrong size or a
    weight out of range is one clear error."""
    from OpenGL import GL

    from vrstyle.gl.context import GLError
    from vrstyle.gl.reproject import Reprojection
    from vrstyle.gl.textures import Framebuffer, create_texture, read_pixels, upload_image
    from vrstyle.reproject import correspondence, reproject, sample

    height, width = 72, 96
    left_view, right_view = _stereo_views(height, width)
    left = np.random.default_rng(6).integers(10, 256, (height, width, 3), np.uint8)
    right = np.zeros((height, width, 3), np.uint8)  # what the left never shows, even blended
    pixels, visible = correspondence(right_view, left_view)
    assert 0.5 < visible.mean() < 1
    source, target = create_texture(width, height), create_texture(width, height)
    upload_image(source, left)
    upload_image(target, right)
    with Reprojection(width, height) as reprojection, Framebuffer() as framebuffer:
        drawn = reprojection.draw(source, target, left_view, right_view)
        framebuffer.attach(target, GL.GL_READ_FRAMEBUFFER)
        result = read_pixels(width, height)
        upload_image(target, np.full_like(right, 200))
        reprojection.draw(source, target, left_view, right_view, weight=0.25)
        blended = read_pixels(width, height)
        with pytest.raises(GLError, match="depth map is"):
            reprojection.draw(source, target, left_view, dataclasses.replace(right_view, depth=right_view.depth[1:]))
        with pytest.raises(GLError, match="weight"):
            reprojection.draw(source, target, left_view, right_view, weight=0.0)
    GL.glDeleteTextures([source, target])
    reprojected = (result != 0).any(-1)
    on_an_edge = edge_ties(pixels)
    np.testing.assert_array_equal(reprojected[~on_an_edge], visible[~on_an_edge])
    assert drawn == reprojected.sum()
    both = reprojected & visible
    assert np.abs(result[both] - sample(left, pixels, cubic=True)[both]).max() <= 1
    expected, _ = reproject(left, np.full_like(right, 200), right_view, left_view, weight=0.25)  # the CPU twin
    assert np.abs(blended[both].astype(int) - expected[both]).max() <= 1
    assert (blended[~reprojected] == 200).all()


def test_gpu_fill_of_thin_disocclusions_is_the_reference_fill(gl_context):
    """Asked to fill, the shader also draws the disoccluded pixels within reach of a seen one,
    from the background side, where and as vrstyle.reproject.fill_disocclusions does; a negative
    reach is one clear error."""
    from OpenGL import GL

    from vrstyle.gl.context import GLError
    from vrstyle.gl.reproject import Reprojection
    from vrstyle.gl.textures import Framebuffer, create_texture, read_pixels, upload_image
    from vrstyle.reproject import correspondence, fill_disocclusions, reproject

    height, width, reach = 72, 96, 1  # at this size 1 px already fills much, not all
    left_view, right_view = _stereo_views(height, width)
    left = np.random.default_rng(7).integers(10, 256, (height, width, 3), np.uint8)
    seen_pixels, seen = correspondence(right_view, left_view)
    _, filled = fill_disocclusions(seen_pixels, seen, right_view.depth, reach)
    assert (filled & ~seen).sum() > 20 and not filled.all()
    source, target = create_texture(width, height), create_texture(width, height)
    upload_image(source, left)
    upload_image(target, np.zeros_like(left))
    with Reprojection(width, height) as reprojection, Framebuffer() as framebuffer:
        drawn = reprojection.draw(source, target, left_view, right_view, fill=reach)
        framebuffer.attach(target, GL.GL_READ_FRAMEBUFFER)
        result = read_pixels(width, height)
        with pytest.raises(GLError, match="fill"):
            reprojection.draw(source, target, left_view, right_view, fill=-1)
    GL.glDeleteTextures([source, target])
    reprojected = (result != 0).any(-1)
    near_an_edge = edge_ties(seen_pixels, reach)  # and the pixels filled from them
    np.testing.assert_array_equal(reprojected[~near_an_edge], filled[~near_an_edge])
    assert drawn == reprojected.sum()
    fresh = filled & ~seen & reprojected & ~near_an_edge
    assert fresh.sum() > 20
    expected, share = reproject(left, np.zeros_like(left), right_view, left_view, fill=reach)  # the CPU twin
    assert share == filled.mean()
    assert np.abs(result[fresh].astype(int) - expected[fresh]).max() <= 1


def test_srgb_swapchain_images_reproject_as_their_bytes(gl_context):
    """sRGB source and target (what OpenXR runtimes offer first): samples decode, writes encode,
    so the target's bytes are the source's, as with RGBA8 eye textures (interpolated in linear
    light here: within a few steps of the byte-space reference)."""
    from OpenGL import GL

    from vrstyle.gl.reproject import Reprojection
    from vrstyle.gl.textures import Framebuffer, create_texture, read_pixels, upload_image
    from vrstyle.reproject import correspondence, sample

    height, width = 48, 64
    left_view, right_view = _stereo_views(height, width)
    y, x = np.mgrid[0:height, 0:width]
    smooth = 130 + 110 * np.sin(x / 6.0)[..., None] * np.cos(y[..., None] / 5.0 + np.arange(3))  # smooth: either space interpolates alike
    left = np.rint(smooth).astype(np.uint8)
    source, target = (create_texture(width, height, GL.GL_SRGB8_ALPHA8) for _ in range(2))
    upload_image(source, left)
    upload_image(target, np.zeros_like(left))
    with Reprojection(width, height) as reprojection, Framebuffer() as framebuffer:
        reprojection.draw(source, target, left_view, right_view)
        framebuffer.attach(target, GL.GL_READ_FRAMEBUFFER)
        result = read_pixels(width, height).astype(float)
    GL.glDeleteTextures([source, target])
    pixels, seen = correspondence(right_view, left_view)
    both = seen & (result != 0).any(-1)
    assert both.mean() > 0.5
    assert np.abs(result[both] - sample(left, pixels, cubic=True)[both]).mean() < 1.5


def test_depth_textures_read_back_as_window_depths_or_one_clear_error(gl_context):
    from OpenGL import GL

    from vrstyle.gl.context import GLError
    from vrstyle.gl.textures import create_texture
    from vrstyle.xr.textures import read_depth_texture

    depth = np.random.default_rng(8).random((20, 30)).astype(np.float32)
    texture = GL.glGenTextures(1)
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_DEPTH_COMPONENT32F, 30, 20, 0, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT,
                    np.ascontiguousarray(depth[::-1]))
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    np.testing.assert_array_equal(read_depth_texture(texture, (20, 30)), depth)
    with pytest.raises(GLError, match="is 30x20, the eyes are 31x20"):
        read_depth_texture(texture, (20, 31))
    colour = create_texture(30, 20)
    with pytest.raises(GLError, match="not a depth texture"):
        read_depth_texture(colour, (20, 30))
    GL.glDeleteTextures([texture, colour])


def test_compositor_leaves_the_callers_gl_state_alone(gl_context):
    from OpenGL import GL

    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(32, 32, tile=16, halo=0, overlap=2, align=1)
    compositor = Compositor(grid)
    GL.glViewport(1, 2, 3, 4)
    GL.glEnable(GL.GL_DEPTH_TEST)
    compositor.upload(np.zeros((2 * len(grid),) + grid.out_shape + (3,), np.uint8))
    compositor.composite()
    assert GL.glGetIntegerv(GL.GL_VIEWPORT).tolist() == [1, 2, 3, 4] and GL.glIsEnabled(GL.GL_DEPTH_TEST)
    GL.glDisable(GL.GL_DEPTH_TEST)
    compositor.close()


def test_upload_rejects_tiles_that_do_not_fit(gl_context):
    from vrstyle.gl.compositor import Compositor

    grid = tiles.plan_grid(32, 32, tile=16, halo=0, overlap=2, align=1)
    compositor = Compositor(grid)
    good = np.zeros((2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    for bad, indices in ((good[:, :-1], None), (good.astype(np.float32), None), (good[..., :2], None),
                         (good[:3], None), (good[:2], [0, 0]), (good[:1], [8])):
        with pytest.raises(tiles.GridError):
            compositor.upload(bad, indices)
    with pytest.raises(tiles.GridError, match="ramp"):
        Compositor(grid, "gaussian")
    compositor.close()


def test_too_new_a_gl_requirement_is_one_clear_line(gl_context):
    from vrstyle.gl.context import GLError, HeadlessContext

    with pytest.raises(GLError, match=r"OpenGL 9\.9 core is needed .*offers OpenGL \d\.\d") as caught:
        HeadlessContext(version=(9, 9))
    assert "\n" not in str(caught.value)
    gl_context.make_current()


def test_no_display_for_a_window_is_one_clear_line(monkeypatch):
    from vrstyle.gl.context import GLError, WindowContext

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(GLError, match="no display .*DISPLAY is not set"):
        WindowContext(64, 64)


def test_demo_scene_renders_a_stereo_pair_with_parallax(gl_context):
    from vrstyle.gl.scene import DemoScene

    scene = DemoScene(96, 128, samples=2)
    frame = scene.render_stereo(2.0)
    later = scene.render_stereo(6.0)
    scene.close()
    assert frame.shape == (2, 96, 128, 3) and frame.dtype == np.uint8
    assert frame.std() > 20  # textured, lit geometry, not a flat fill
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 500
    assert np.abs(frame[0].astype(int) - frame[1]).mean() > 2  # the eyes see from different places
    assert np.abs(frame.astype(int) - later).mean() > 1  # things move


def test_demo_scene_takes_a_headsets_views(gl_context):
    """Asymmetric OpenXR-style fields of view and poses: swapping the eyes' views swaps the images."""
    from vrstyle.gl import transforms as tf
    from vrstyle.gl.scene import DemoScene

    scene = DemoScene(64, 64, samples=0)
    poses = tf.stereo_eye_poses(tf.pose_matrix((0, 1.6, 2), (0, 0, 0, 1)), 0.064)
    projections = np.stack([tf.fov_projection(-0.8, 0.7, 0.75, -0.8), tf.fov_projection(-0.7, 0.8, 0.75, -0.8)])
    scene.render(np.linalg.inv(poses), projections, 1.0)
    straight = scene.read()
    scene.render(np.linalg.inv(poses[::-1]), projections[::-1], 1.0)
    swapped = scene.read()
    scene.close()
    assert np.array_equal(straight[::-1], swapped)
    assert not np.array_equal(straight[0], straight[1])


def test_installed_layout_finds_the_shaders_inside_the_package(tmp_path):
    """In a wheel the sources are the namespace package vrstyle/shaders (no __init__.py)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "vrstyle", tmp_path / "vrstyle", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "tiles", tmp_path / "tiles", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "shaders", tmp_path / "vrstyle" / "shaders")
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from vrstyle.gl.shaders import shader_dir; print(shader_dir())")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.stdout.strip() == str(tmp_path / "vrstyle" / "shaders"), done.stderr


# One lifecycle: every GL owner frees exactly what it made, once, also when its constructor fails.

GRID = tiles.plan_grid(48, 64, tile=32, halo=4, overlap=2, align=1)


def _owners() -> dict:
    """A way to make every GL owner, by class name."""
    from vrstyle.gl.compositor import Compositor
    from vrstyle.gl.display import EyeDisplay, TextPanel
    from vrstyle.gl.geometry import box
    from OpenGL import GL

    from vrstyle.gl.reproject import EyeHistory, Reprojection
    from vrstyle.gl.scene import DemoScene, Mesh
    from vrstyle.gl.shaders import Program
    from vrstyle.gl.textures import Framebuffer, PixelStream
    from vrstyle.sources import SceneSource

    def panel():
        made = TextPanel()
        made.set_text("two\nlines")  # the panel's texture is made on first text
        return made

    return {"Compositor": lambda: Compositor(GRID), "EyeDisplay": EyeDisplay, "TextPanel": panel,
            "DemoScene": lambda: DemoScene(32, 48, samples=2), "SceneSource": lambda: SceneSource((32, 48)),
            "Mesh": lambda: Mesh(*box()), "Program": lambda: Program("resolve"), "Framebuffer": Framebuffer,
            "PixelStream": PixelStream, "Reprojection": lambda: Reprojection(32, 48),
            "EyeHistory": lambda: EyeHistory(32, 48, GL.GL_SRGB8_ALPHA8)}


OWNERS = ["Compositor", "EyeDisplay", "TextPanel", "DemoScene", "SceneSource", "Mesh", "Program", "Framebuffer",
          "PixelStream", "Reprojection", "EyeHistory"]
CONTEXTS = {"HeadlessContext": "test_headless_context_closes_once",
            "WindowContext": "needs a display: tests/mirror_lifecycle_app.py, under Xvfb"}


def _exercise(owner) -> None:
    """Use an owner the way its callers do, so that names made in use are counted too."""
    from vrstyle.gl.compositor import Compositor
    from vrstyle.sources import SceneSource

    if isinstance(owner, Compositor):
        owner.upload(np.zeros((2 * len(GRID),) + GRID.out_shape + (3,), np.uint8))
        owner.composite()
    elif isinstance(owner, SceneSource):
        owner.frame(0.5)


def test_every_gl_owner_is_listed():
    """Every Resource class of vrstyle.gl (and the GL-backed source) has a lifecycle test here."""
    import importlib
    import inspect
    import pkgutil

    import vrstyle.gl
    from vrstyle.resources import Resource

    found = {"SceneSource"}
    for module in pkgutil.iter_modules(vrstyle.gl.__path__, "vrstyle.gl."):
        for name, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, Resource) and value.__module__ == module.name:
                found.add(name)
    assert found - set(CONTEXTS) == set(_owners()) == set(OWNERS)


@pytest.mark.parametrize("owner", OWNERS)
def test_gl_owner_closes_once_and_a_second_close_frees_nothing_new(gl_context, monkeypatch, owner):
    names = NameTracker(monkeypatch.setattr)
    make = _owners()[owner]
    first = make()
    _exercise(first)
    made = set(names.live)
    assert made
    first.close()
    assert not names.live and first.closed
    second = make()  # may be given the names the first one freed
    alive = set(names.live)
    first.close()  # must not free them again
    assert names.live == alive and not second.closed
    with second:
        pass
    assert second.closed and not names.live and not names.freed_twice


@pytest.mark.parametrize("owner", ["Compositor", "EyeDisplay", "TextPanel", "DemoScene", "SceneSource", "Mesh"])
@pytest.mark.parametrize("at", ["first", "last"])
def test_gl_owner_failing_half_way_frees_what_it_made(gl_context, monkeypatch, owner, at):
    """The constructor's vertex-array allocation (first or last of them) fails: nothing it made stays alive."""
    from OpenGL import GL

    from vrstyle.gl.context import GLError

    names = NameTracker(monkeypatch.setattr)
    make, real = _owners()[owner], GL.glGenVertexArrays
    calls = []

    def counting(*args):
        calls.append(args)
        if len(calls) == fail_at:
            raise GLError("injected allocation failure")
        return real(*args)

    fail_at = 0
    monkeypatch.setattr(GL, "glGenVertexArrays", counting)
    make().close()
    fail_at, calls[:] = (1 if at == "first" else len(calls)), []
    with pytest.raises(GLError, match="injected"):
        make()
    assert not names.live and not names.freed_twice


def test_headless_context_closes_once(gl_context, monkeypatch):
    """A second close destroys no EGL context (by then the id may be another context's)."""
    from vrstyle.gl.context import HeadlessContext

    destroyed = []
    with HeadlessContext() as other:
        real = other.egl.eglDestroyContext
        monkeypatch.setattr(other.egl, "eglDestroyContext", lambda *args: destroyed.append(args) or real(*args))
    other.close()
    gl_context.make_current()
    assert other.closed and len(destroyed) == 1
