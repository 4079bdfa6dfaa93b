"""Showing eye textures in a window: side by side, one eye or anaglyph, a tile-grid overlay, text panels.

Used by the desktop mirror and by anything else that wants to look at two eye textures
(the headset's mirror window). Draws into whatever framebuffer is bound (a window's).
"""

from __future__ import annotations

import enum

import numpy as np
from OpenGL import GL
from PIL import Image, ImageDraw, ImageFont

from tiles import TileGrid
from vrstyle.gl.shaders import Program
from vrstyle.gl.textures import create_texture, owned_texture, read_pixels, upload_image
from vrstyle.resources import Resource

PANEL_FONT_PX = 15
PANEL_MARGIN_PX = 8


class ViewMode(enum.IntEnum):
    """How the two eyes are shown (the values are the mirror shader's ``mode``)."""

    SIDE_BY_SIDE = 0
    LEFT = 1
    RIGHT = 2
    ANAGLYPH = 3

    def next(self) -> "ViewMode":
        return ViewMode((self + 1) % len(ViewMode))


def letterbox(content: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the largest ``content`` (w, h) rectangle centred in ``frame`` (w, h).

    >>> letterbox((200, 100), (400, 400))
    (0, 100, 400, 200)
    """
    factor = min(frame[0] / content[0], frame[1] / content[1])
    width, height = round(content[0] * factor), round(content[1] * factor)
    return (frame[0] - width) // 2, (frame[1] - height) // 2, width, height


class EyeDisplay(Resource):
    """Draws two eye textures (GL orientation) into the bound framebuffer, letterboxed."""

    def __init__(self):
        with self.building():
            self.program = self.own(Program("mirror"))
            self.vao = GL.glGenVertexArrays(1)
            self.on_close(GL.glDeleteVertexArrays, 1, [self.vao])
            self.tile_state = owned_texture(self, 1, 1, GL.GL_R8, filtering=GL.GL_NEAREST)
        self.tile_state_shape = (1, 1)

    def draw(self, eyes: tuple[int, int], eye_size: tuple[int, int], frame_size: tuple[int, int],
             mode: ViewMode = ViewMode.SIDE_BY_SIDE, grid: TileGrid | None = None,
             fallback: np.ndarray | None = None, scales: np.ndarray | None = None) -> tuple[int, int, int, int]:
        """Draw; returns the viewport (x, y, width, height) the eyes fill.

        Args:
            eyes: left and right eye textures.
            eye_size: (width, height) of the eye images in them.
            frame_size: (width, height) of the framebuffer.
            mode: side by side, one eye, or anaglyph.
            grid: draw this tile grid over the eyes (None: no overlay).
            fallback: (2 * len(grid),) bools, tiles that fell back to an older or raw tile (tinted red).
            scales: (2 * len(grid),) foveated tiles' scales (1/2: tinted light blue, 1/4: blue).
        """
        content = (2 * eye_size[0], eye_size[1]) if mode == ViewMode.SIDE_BY_SIDE else eye_size
        viewport = letterbox(content, frame_size)
        GL.glViewport(0, 0, *frame_size)
        GL.glClearColor(0.0, 0.0, 0.0, 1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT)
        GL.glViewport(*viewport)
        GL.glDisable(GL.GL_BLEND)
        GL.glDisable(GL.GL_DEPTH_TEST)
        uniforms = dict(left_eye=0, right_eye=1, tile_state=2, mode=int(mode), show_grid=int(grid is not None),
                        eye_size=eye_size)
        if grid is not None:
            uniforms.update(core_size=(grid.core_w, grid.core_h), grid_shape=(grid.cols, grid.rows), overlap=grid.overlap)
            self._upload_tile_state(grid, fallback, scales)
        self.program.use().set(**uniforms)
        for unit, texture in enumerate((*eyes, self.tile_state)):
            GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
            GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
        GL.glBindVertexArray(self.vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glViewport(0, 0, *frame_size)
        return viewport

    def _upload_tile_state(self, grid: TileGrid, fallback: np.ndarray | None, scales: np.ndarray | None) -> None:
        """One texel per tile: 255 fell back, else 0 / 85 / 170 for scale 1 / 2 / 4 (what the overlay tints)."""
        state = np.zeros(2 * len(grid), dtype=np.uint8)
        if scales is not None:
            state[np.asarray(scales) == 2], state[np.asarray(scales) == 4] = 85, 170
        if fallback is not None:
            state[np.asarray(fallback, dtype=bool)] = 255
        image = state.reshape(2 * grid.rows, grid.cols)  # eye 0 rows first, row 0 at the top
        shape = (grid.cols, 2 * grid.rows)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.tile_state)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        if shape != self.tile_state_shape:
            GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_R8, *shape, 0, GL.GL_RED, GL.GL_UNSIGNED_BYTE, image)
            self.tile_state_shape = shape
        else:
            GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, *shape, GL.GL_RED, GL.GL_UNSIGNED_BYTE, image)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)



class TextPanel(Resource):
    """Lines of text on a translucent panel in a corner of the window (statistics, key help)."""

    def __init__(self, font_px: int = PANEL_FONT_PX):
        self.font = ImageFont.load_default(size=font_px)
        self.texture, self.size, self.text = None, (0, 0), None
        with self.building():
            self.program = self.own(Program("overlay"))
            self.vao = GL.glGenVertexArrays(1)
            self.on_close(GL.glDeleteVertexArrays, 1, [self.vao])

    def set_text(self, text: str) -> None:
        """Re-render the panel if the text changed."""
        if text == self.text:
            return
        self.text = text
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=self.font, spacing=4)
        width, height = right + 2 * PANEL_MARGIN_PX, bottom + 2 * PANEL_MARGIN_PX
        panel = Image.new("RGBA", (width, height), (0, 0, 0, 150))
        ImageDraw.Draw(panel).multiline_text((PANEL_MARGIN_PX, PANEL_MARGIN_PX), text, font=self.font,
                                             fill=(255, 255, 255, 255), spacing=4)
        pixels = np.asarray(panel).astype(np.float32)
        pixels[..., :3] *= pixels[..., 3:] / 255.0  # premultiplied alpha
        pixels = pixels.round().astype(np.uint8)
        if self.texture is None or self.size != (width, height):
            if self.texture is not None:
                GL.glDeleteTextures([self.texture])
            self.texture, self.size = create_texture(width, height), (width, height)
        upload_image(self.texture, pixels[::-1])  # the overlay shader reads row 0 at the top

    def draw(self, frame_size: tuple[int, int], corner: tuple[int, int] = (10, 10)) -> None:
        if self.texture is None:
            return
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        self.program.use().set(panel=0, rect=(*corner, *self.size), viewport_size=frame_size)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glBindVertexArray(self.vao)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        GL.glDisable(GL.GL_BLEND)

    def _free(self) -> None:
        if self.texture is not None:  # re-made when the panel's size changes, so not registered
            GL.glDeleteTextures([self.texture])


def screenshot(frame_size: tuple[int, int]) -> np.ndarray:
    """(height, width, 3) uint8 top-down pixels of the window's back buffer (call before swapping)."""
    GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
    GL.glReadBuffer(GL.GL_BACK)
    return read_pixels(*frame_size)
