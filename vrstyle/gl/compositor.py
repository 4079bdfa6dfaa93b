"""The GPU half of stitching: stylised tiles -> seam-blended eye images, in any GL context.

Tiles stream into one texture array (through a pixel buffer object). Per eye, every tile
that arrived is drawn as an instanced quad into a float target with additive blending,
weighted by its feather ramp (``shaders/tile_accumulate.*``); a resolve pass divides the sum
by the weight sum into the eye's target texture (``shaders/resolve.frag``). The result equals
:func:`tiles.stitch` on the CPU within one 8-bit step, missing tiles and image borders included.
Foveated tiles (:mod:`tiles.foveate`) are upscaled here by the texture unit's bilinear filter,
within two 8-bit steps of :func:`tiles.upscale_tile`.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np
from OpenGL import GL

from tiles import RAMPS, SCALES, GridError, TileGrid, level_grid
from tiles.stitch import WEIGHT_EPS
from vrstyle import settings
from vrstyle.gl.context import GLError
from vrstyle.gl.shaders import Program
from vrstyle.gl.textures import (
    FORMATS, Framebuffer, PixelStream, Target, owned_texture, preserved_state, read_pixels, texture_size,
)
from vrstyle.resources import Resource

EYES = 2


class Compositor(Resource):
    """Stitches a stereo frame's stylised tiles into one texture per eye, on the GPU.

    Create it with a GL context current, use it and close it in that context (or its share group).

    Args:
        grid: the tile grid, planned for one eye (its height x width is the eye size).
        ramp: feather ramp, ``"linear"`` or ``"cosine"`` (as :func:`tiles.tile_weights`).

    Raises:
        GridError: unknown ramp.
        GLError: a shader does not build on this GL.

    Shape:
        tiles: (2 * len(grid), out_h, out_w, 3 | 4) uint8, image-major (eye 0's tiles first).
    """

    def __init__(self, grid: TileGrid, ramp: str = settings.RAMP):
        if ramp not in RAMPS:
            raise GridError(f"unknown feather ramp {ramp!r}; choose one of {', '.join(RAMPS)}")
        self.grid, self.ramp = grid, ramp
        self.layers = EYES * len(grid)
        out_h, out_w = grid.out_shape
        with self.building():
            self.accumulate = self.own(Program("accumulate"))
            self.resolve = self.own(Program("resolve"))
            self.tile_array = owned_texture(self, out_w, out_h, GL.GL_RGBA8, layers=self.layers, filtering=GL.GL_LINEAR)
            self.sums = owned_texture(self, grid.width, grid.height, GL.GL_RGBA32F, filtering=GL.GL_NEAREST)
            self.eye_textures = [owned_texture(self, grid.width, grid.height) for _ in range(EYES)]
            self.framebuffer = self.own(Framebuffer())
            self.stream = self.own(PixelStream())
            self.instances = GL.glGenBuffers(1)
            self.on_close(GL.glDeleteBuffers, 1, [self.instances])
            self.tile_vao, self.empty_vao = GL.glGenVertexArrays(2)
            self.on_close(GL.glDeleteVertexArrays, 2, [self.tile_vao, self.empty_vao])
        self.present = np.zeros(self.layers, dtype=bool)
        self.scales = np.ones(self.layers, dtype=np.int32)
        self.targets: list[Target] = list(self.eye_textures)

    def upload(self, tiles: np.ndarray, indices: Sequence[int] | None = None,
               scales: np.ndarray | None = None) -> None:
        """Stream a frame's tiles to the GPU; tiles not given are absent from this frame.

        Args:
            tiles: (K, out_h, out_w, 3 | 4) uint8 returned tiles (core + overlap).
            indices: their image-major indices (default: all ``2 * len(grid)`` in order).
            scales: (K,) each tile's scale (:attr:`vrstyle.pipeline.FrameResult.scales`);
                default all 1.

        Raises:
            GridError: shapes, dtype, indices or scales that do not fit the grid.
        """
        indices = np.arange(self.layers) if indices is None else np.asarray(indices, dtype=np.int64)
        expected = (len(indices),) + self.grid.out_shape
        if tiles.dtype != np.uint8 or tiles.shape[:3] != expected or tiles.ndim != 4 or tiles.shape[3] not in FORMATS:
            raise GridError(f"tiles are {tiles.shape} {tiles.dtype}, expected {expected + ('3|4',)} uint8")
        if len(indices) and (indices.min() < 0 or indices.max() >= self.layers or len(set(indices.tolist())) < len(indices)):
            raise GridError(f"tile indices must be distinct and within 0..{self.layers - 1}")
        scales = np.ones(len(indices), np.int32) if scales is None else np.asarray(scales, np.int32)
        if scales.shape != (len(indices),) or not np.isin(scales, SCALES).all():
            raise GridError(f"need one scale from {SCALES} per tile ({len(indices)})")
        for scale in set(scales.tolist()) - {1}:
            level_grid(self.grid, scale)  # the grid's cores must divide down to it
        self.present[:] = False
        self.present[indices] = True
        self.scales[indices] = scales
        if not len(indices):
            return
        out_h, out_w = self.grid.out_shape
        layer_bytes = out_h * out_w * tiles.shape[3]
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.tile_array)
        with self.stream.staged(tiles):
            for start, stop in _runs(indices):  # consecutive layers go up in one call
                offset = ctypes.c_void_p(int(np.flatnonzero(indices == start)[0]) * layer_bytes)
                GL.glTexSubImage3D(GL.GL_TEXTURE_2D_ARRAY, 0, 0, 0, start, out_w, out_h, stop - start,
                                   FORMATS[tiles.shape[3]], GL.GL_UNSIGNED_BYTE, offset)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, 0)

    def composite(self, targets: Sequence[Target] | None = None) -> list[Target]:
        """Stitch the uploaded tiles into one target per eye.

        Args:
            targets: two colour textures (ids of GL_TEXTURE_2D, or (array texture, layer)),
                at least the eye's size, e.g. OpenXR swapchain images; sRGB formats are
                written so that they hold the stitched sRGB bytes. Default: the compositor's
                own RGBA8 eye textures.

        Returns:
            The targets written. The eye image occupies their bottom-left ``width x height``
            (GL orientation: image row 0 at the top of the texture's rows).
        """
        targets = list(self.eye_textures if targets is None else targets)
        if len(targets) != EYES:
            raise GLError(f"need {EYES} targets (one per eye), got {len(targets)}")
        height, width = self.grid.height, self.grid.width
        with preserved_state():
            for target in targets:
                size = texture_size(target)
                if size[0] < width or size[1] < height:
                    raise GLError(f"target {target} is {size[0]}x{size[1]}, smaller than the eye ({width}x{height})")
            for cap in (GL.GL_DEPTH_TEST, GL.GL_CULL_FACE, GL.GL_SCISSOR_TEST):
                GL.glDisable(cap)
            GL.glViewport(0, 0, width, height)
            GL.glActiveTexture(GL.GL_TEXTURE0)
            for eye, target in enumerate(targets):
                self._accumulate(eye)
                self._resolve(target)
        self.targets = targets
        return targets

    def _accumulate(self, eye: int) -> None:
        grid = self.grid
        layers = np.flatnonzero(self.present[eye * len(grid):(eye + 1) * len(grid)]).astype(np.int32) + eye * len(grid)
        self.framebuffer.attach(self.sums)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)
        GL.glClearColor(0, 0, 0, 0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT)
        if not len(layers):
            return
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendEquation(GL.GL_FUNC_ADD)
        GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE)
        self.accumulate.use().set(tiles=0, eye_size=(grid.width, grid.height), core_size=(grid.core_w, grid.core_h),
                                  grid_shape=(grid.cols, grid.rows), overlap=grid.overlap,
                                  tiles_per_eye=len(grid), cosine_ramp=int(self.ramp == "cosine"),
                                  level_overlap=self._level_overlaps(self.scales[layers]))
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.tile_array)
        GL.glBindVertexArray(self.tile_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.instances)
        instances = np.ascontiguousarray(np.stack([layers, self.scales[layers]], axis=1), dtype=np.int32)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, instances.nbytes, instances, GL.GL_STREAM_DRAW)
        for location in (0, 1):  # (layer, scale) per instance
            GL.glEnableVertexAttribArray(location)
            GL.glVertexAttribIPointer(location, 1, GL.GL_INT, 8, ctypes.c_void_p(4 * location))
            GL.glVertexAttribDivisor(location, 1)
        GL.glDrawArraysInstanced(GL.GL_TRIANGLE_STRIP, 0, 4, len(layers))
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        GL.glDisable(GL.GL_BLEND)

    def _level_overlaps(self, scales: np.ndarray) -> tuple[int, int]:
        """The overlaps of the scale-2 and scale-4 tiles in use (0 for a scale not in use)."""
        return tuple(level_grid(self.grid, scale).overlap if (scales == scale).any() else 0 for scale in (2, 4))

    def _resolve(self, target: Target) -> None:
        self.framebuffer.attach(target)
        srgb = self.framebuffer.is_srgb()
        (GL.glEnable if srgb else GL.glDisable)(GL.GL_FRAMEBUFFER_SRGB)
        self.resolve.use().set(accumulated=0, weight_eps=WEIGHT_EPS, srgb_target=int(srgb))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.sums)
        GL.glBindVertexArray(self.empty_vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def read(self, eye: int) -> np.ndarray:
        """(height, width, 3) uint8 top-down pixels of the eye's last target (tests, screenshots)."""
        with preserved_state():
            self.framebuffer.attach(self.targets[eye], GL.GL_READ_FRAMEBUFFER)
            return read_pixels(self.grid.width, self.grid.height)


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, stop) runs of consecutive values, in the order given.

    >>> _runs(np.array([0, 1, 2, 5, 6, 3]))
    [(0, 3), (5, 7), (3, 4)]
    """
    runs: list[tuple[int, int]] = []
    for value in indices.tolist():
        if runs and value == runs[-1][1]:
            runs[-1] = (runs[-1][0], value + 1)
        else:
            runs.append((value, value + 1))
    return runs
