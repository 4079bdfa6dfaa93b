"""The headset's mirror window: what the headset shows, both eyes side by side on the desktop.

It is the window whose GL context the session renders with, so the swapchain images are drawn
directly (with vrstyle.gl's eye display), just after they are composited and before they are
released. The window never paces the loop (no vsync): the headset does.
"""

from __future__ import annotations

from typing import Sequence

from OpenGL import GL

from vrstyle.resources import Resource

GL_TEXTURE_SRGB_DECODE_EXT = 0x8A48
GL_DECODE_EXT, GL_SKIP_DECODE_EXT = 0x8A49, 0x8A4A
"""EXT_texture_sRGB_decode: sample the sRGB swapchain images' bytes as stored, not linearised,
so the window (a plain 8-bit framebuffer) shows them as the headset does."""


class HeadsetMirror(Resource):
    """Draws the eye images into a :class:`vrstyle.gl.context.WindowContext` each frame.

    Args:
        window: the visible window holding the session's GL context.
    """

    def __init__(self, window):
        from vrstyle.gl.display import EyeDisplay

        self.window = window
        self.display = self.own(EyeDisplay())

    def show(self, textures: Sequence[int], eye_size: tuple[int, int]) -> bool:
        """Draw the eye textures and present them; False once the user closed the window."""
        for texture in textures:
            self._decode(texture, GL_SKIP_DECODE_EXT)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        self.display.draw(tuple(textures), eye_size, self.window.framebuffer_size())
        for texture in textures:
            self._decode(texture, GL_DECODE_EXT)
        self.window.swap()
        return not self.window.should_close()

    @staticmethod
    def _decode(texture: int, mode: int) -> None:
        GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL_TEXTURE_SRGB_DECODE_EXT, mode)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR)  # one level: no mipmaps
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
