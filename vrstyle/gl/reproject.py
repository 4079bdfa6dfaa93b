"""Reprojection on the GPU: a view takes another view's stylised strokes wherever it sees the
same surface, so both eyes see the same strokes and strokes hold still as the head moves.

A renderer knows each view's depth and pose. :class:`Reprojection` draws a source view's
stylised image (the other eye, or this eye's previous frame) into a target view's already
stitched image, pixel by pixel where the depths say both see the same surface
(``shaders/reproject.frag``, the rule of :func:`vrstyle.reproject.correspondence`), replacing
it or blended with it; disocclusions and what the source does not see keep the target's own
stylisation, or, asked to, thin disocclusions take the strokes of the background beside them.
"""

from __future__ import annotations

import numpy as np
from OpenGL import GL

from vrstyle.gl.context import GLError
from vrstyle.gl.shaders import Program
from vrstyle.gl.textures import (
    SRGB_INTERNAL_FORMATS, Framebuffer, Target, owned_texture, preserved_state, texture_format, texture_size,
)
from vrstyle.reproject import DEPTH_TOLERANCE, EDGE_SLACK, View
from vrstyle.resources import Resource


class Reprojection(Resource):
    """Draws one view's image into another's where both see the same surface.

    Create it with a GL context current, use it and close it in that context.

    Args:
        width, height: the eyes' image size.
        tolerance: relative distance within which the two eyes' depths are the same surface.

    Raises:
        GLError: the shader does not build on this GL.
    """

    def __init__(self, width: int, height: int, tolerance: float = DEPTH_TOLERANCE):
        self.width, self.height, self.tolerance = width, height, tolerance
        with self.building():
            self.program = self.own(Program("reproject"))
            self.depths = [owned_texture(self, width, height, GL.GL_R32F, filtering=GL.GL_NEAREST) for _ in range(2)]
            self.framebuffer = self.own(Framebuffer())
            self.vao = GL.glGenVertexArrays(1)
            self.on_close(GL.glDeleteVertexArrays, 1, [self.vao])
            self.query = int(GL.glGenQueries(1)[0])
            self.on_close(GL.glDeleteQueries, 1, [self.query])

    def draw(self, source: int, target: Target, source_view: View, target_view: View, weight: float = 1.0,
             fill: int = 0) -> int:
        """``target``'s pixels whose surface ``source`` sees become ``source``'s image there,
        or a blend: ``weight * source + (1 - weight) * target``.

        Args:
            source: a GL_TEXTURE_2D holding the source view's stylised image at its bottom left
                (e.g. a :class:`~vrstyle.gl.compositor.Compositor` eye texture, or a swapchain
                image: sRGB formats are decoded, RGBA8 taken to hold sRGB-coded bytes).
            target: the target view's texture (or array layer), its stylised image at its bottom left.
            source_view, target_view: each view's matrices and top-down window depth (H, W).
            weight: the source's share where it is valid, in (0, 1].
            fill: also draw the disoccluded pixels within ``fill`` pixels of a seen one along
                their row, from the background beside them
                (:func:`vrstyle.reproject.fill_disocclusions`); 0 keeps the target's own there.

        Returns:
            How many of the target's pixels now show the source's strokes.

        Raises:
            GLError: a depth map not of the eyes' size or not finite in 0..1, a texture
                smaller than the eyes, a weight outside (0, 1], or a negative fill.
        """
        if not 0 < weight <= 1:
            raise GLError(f"reprojection weight must be in (0, 1], got {weight}")
        if fill < 0:
            raise GLError(f"reprojection fill must be >= 0 pixels, got {fill}")
        for view in (source_view, target_view):
            depth = np.asarray(view.depth)
            if depth.shape != (self.height, self.width):
                raise GLError(f"depth map is {depth.shape[::-1] if depth.ndim == 2 else depth.shape}, "
                              f"not the eyes' {self.width}x{self.height}")
            if not np.isfinite(depth).all() or depth.min() < 0 or depth.max() > 1:
                raise GLError("depth map must hold window depths in 0..1 (0 near, 1 far)")
        for texture in (source, target):
            width, height = texture_size(texture)
            if width < self.width or height < self.height:
                raise GLError(f"texture {texture} is {width}x{height}, "
                              f"smaller than the eyes ({self.width}x{self.height})")
        for texture, view in zip(self.depths, (source_view, target_view)):
            GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
            GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
            GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, self.width, self.height, GL.GL_RED, GL.GL_FLOAT,
                               np.ascontiguousarray(view.depth[::-1], dtype=np.float32))
        projection = source_view.projection
        srgb_source = texture_format(source) in SRGB_INTERNAL_FORMATS
        with preserved_state():
            self.framebuffer.attach(target)
            srgb = self.framebuffer.is_srgb()
            (GL.glEnable if srgb else GL.glDisable)(GL.GL_FRAMEBUFFER_SRGB)
            for cap in (GL.GL_DEPTH_TEST, GL.GL_CULL_FACE, GL.GL_SCISSOR_TEST):
                GL.glDisable(cap)
            GL.glEnable(GL.GL_BLEND)
            GL.glBlendEquation(GL.GL_FUNC_ADD)
            GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ZERO, GL.GL_ONE)  # alpha kept
            GL.glViewport(0, 0, self.width, self.height)
            self.program.use().set(
                source_image=0, source_depth=1, target_depth=2, eye_size=(self.width, self.height),
                target_to_world=np.linalg.inv(target_view.projection @ target_view.view),
                world_to_source=projection @ source_view.view, source_view=source_view.view,
                source_projection=(projection[2, 2], projection[2, 3]), tolerance=self.tolerance, edge_slack=EDGE_SLACK,
                srgb_source=int(srgb_source), srgb_target=int(srgb), weight=weight, fill_reach=int(fill))
            for unit, texture in enumerate((source, *self.depths)):
                GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
                GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
            GL.glBindVertexArray(self.vao)
            GL.glBeginQuery(GL.GL_SAMPLES_PASSED, self.query)
            GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
            GL.glEndQuery(GL.GL_SAMPLES_PASSED)
            for unit in (2, 1, 0):
                GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
                GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        return int(GL.glGetQueryObjectuiv(self.query, GL.GL_QUERY_RESULT))


class EyeHistory(Resource):
    """Copies of the eyes last shown, for temporal consistency where the shown images cannot be
    read later (OpenXR swapchain images go back to the runtime): same size and format.

    Args:
        width, height: the eyes' image size.
        internal_format: the targets' GL internal format (copies keep their bytes).
    """

    def __init__(self, width: int, height: int, internal_format: int):
        self.width, self.height, self.internal_format = width, height, internal_format
        with self.building():
            self.textures = [owned_texture(self, width, height, internal_format) for _ in range(2)]
            self.reader, self.writer = self.own(Framebuffer()), self.own(Framebuffer())

    def keep(self, targets: list[Target]) -> None:
        """Copy the two targets' eye images (bytes as stored: no sRGB conversion)."""
        with preserved_state():
            GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)
            GL.glDisable(GL.GL_SCISSOR_TEST)
            for target, texture in zip(targets, self.textures):
                self.reader.attach(target, GL.GL_READ_FRAMEBUFFER)
                self.writer.attach(texture, GL.GL_DRAW_FRAMEBUFFER)
                GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, self.width, self.height,
                                     GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
