"""Textures, framebuffers and pixel transfers shared by the compositor, the scene and the mirror.

GL images are stored the GL way (row 0 at the bottom); numpy images are top-down. The
helpers here convert at the boundary, so callers only ever see top-down arrays.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator, Union

import numpy as np
from OpenGL import GL

from vrstyle.gl.context import GLError
from vrstyle.resources import Resource

Target = Union[int, tuple[int, int]]
"""A colour target: a GL_TEXTURE_2D id, or (GL_TEXTURE_2D_ARRAY id, layer) as in OpenXR array swapchains."""

FORMATS = {3: GL.GL_RGB, 4: GL.GL_RGBA}
"""Pixel transfer formats by channel count."""
SRGB_INTERNAL_FORMATS = frozenset({GL.GL_SRGB8_ALPHA8, GL.GL_SRGB8, GL.GL_SRGB_ALPHA, GL.GL_SRGB})
"""Texture formats that store sRGB-encoded values (sampling decodes them to linear)."""


def create_texture(width: int, height: int, internal_format: int = GL.GL_RGBA8, layers: int = 0,
                   filtering: int = GL.GL_LINEAR) -> int:
    """An empty single-level 2D texture (or 2D array of ``layers``), clamped at the edges."""
    target = GL.GL_TEXTURE_2D_ARRAY if layers else GL.GL_TEXTURE_2D
    texture = GL.glGenTextures(1)
    GL.glBindTexture(target, texture)
    if layers:
        GL.glTexImage3D(target, 0, internal_format, width, height, layers, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, None)
    else:
        GL.glTexImage2D(target, 0, internal_format, width, height, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, None)
    GL.glTexParameteri(target, GL.GL_TEXTURE_MAX_LEVEL, 0)
    GL.glTexParameteri(target, GL.GL_TEXTURE_MIN_FILTER, filtering)
    GL.glTexParameteri(target, GL.GL_TEXTURE_MAG_FILTER, filtering)
    GL.glTexParameteri(target, GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE)
    GL.glTexParameteri(target, GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)
    GL.glBindTexture(target, 0)
    return texture


def upload_image(texture: int, image: np.ndarray) -> None:
    """Replace a 2D texture's pixels with a top-down (H, W, 3|4) uint8 image (stored GL-way up)."""
    height, width, channels = image.shape
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
    GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, FORMATS[channels], GL.GL_UNSIGNED_BYTE,
                       np.ascontiguousarray(image[::-1]))
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)


def texture_size(target: Target) -> tuple[int, int]:
    """(width, height) of level 0 of a 2D texture or 2D array texture."""
    texture, kind = (target[0], GL.GL_TEXTURE_2D_ARRAY) if isinstance(target, tuple) else (target, GL.GL_TEXTURE_2D)
    GL.glBindTexture(kind, texture)
    size = (int(GL.glGetTexLevelParameteriv(kind, 0, GL.GL_TEXTURE_WIDTH)),
            int(GL.glGetTexLevelParameteriv(kind, 0, GL.GL_TEXTURE_HEIGHT)))
    GL.glBindTexture(kind, 0)
    return size


def texture_format(target: Target) -> int:
    """The GL internal format of level 0 of a 2D texture or 2D array texture."""
    texture, kind = (target[0], GL.GL_TEXTURE_2D_ARRAY) if isinstance(target, tuple) else (target, GL.GL_TEXTURE_2D)
    GL.glBindTexture(kind, texture)
    internal = int(GL.glGetTexLevelParameteriv(kind, 0, GL.GL_TEXTURE_INTERNAL_FORMAT))
    GL.glBindTexture(kind, 0)
    return internal


def owned_texture(owner: Resource, width: int, height: int, internal_format: int = GL.GL_RGBA8, layers: int = 0,
                  filtering: int = GL.GL_LINEAR) -> int:
    """:func:`create_texture`, deleted when ``owner`` closes."""
    texture = create_texture(width, height, internal_format, layers, filtering)
    owner.on_close(GL.glDeleteTextures, [texture])
    return texture


class Framebuffer(Resource):
    """A framebuffer object whose colour attachment is re-pointed at targets as needed."""

    def __init__(self):
        self.id = GL.glGenFramebuffers(1)

    def attach(self, target: Target, binding: int = GL.GL_FRAMEBUFFER) -> None:
        """Bind to ``binding`` with ``target`` as colour attachment 0; raise if incomplete."""
        GL.glBindFramebuffer(binding, self.id)
        if isinstance(target, tuple):
            GL.glFramebufferTextureLayer(binding, GL.GL_COLOR_ATTACHMENT0, target[0], 0, target[1])
        else:
            GL.glFramebufferTexture2D(binding, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, target, 0)
        status = GL.glCheckFramebufferStatus(binding)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            raise GLError(f"texture {target} cannot be rendered to (framebuffer status 0x{int(status):x})")

    def is_srgb(self) -> bool:
        """Whether the attached colour target stores sRGB-encoded values (e.g. SRGB8_ALPHA8)."""
        encoding = GL.glGetFramebufferAttachmentParameteriv(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0,
                                                            GL.GL_FRAMEBUFFER_ATTACHMENT_COLOR_ENCODING)
        return int(np.asarray(encoding).ravel()[0]) == GL.GL_SRGB

    def _free(self) -> None:
        GL.glDeleteFramebuffers(1, [self.id])


def read_pixels(width: int, height: int, channels: int = 3, into: np.ndarray | None = None) -> np.ndarray:
    """The bound read framebuffer's (height, width, channels) uint8 pixels, top-down: a copy,
    or with ``into`` (C-contiguous, that shape) read into it bottom-up, as GL gives them, and
    returned as its upside-down view (no copy to flip them)."""
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
    if into is not None:
        if into.shape != (height, width, channels) or into.dtype != np.uint8 or not into.flags.c_contiguous:
            raise GLError(f"cannot read {width}x{height}x{channels} pixels into a {into.shape} {into.dtype} array")
        GL.glReadPixels(0, 0, width, height, FORMATS[channels], GL.GL_UNSIGNED_BYTE, into)
        return into[::-1]
    data = GL.glReadPixels(0, 0, width, height, FORMATS[channels], GL.GL_UNSIGNED_BYTE)
    return np.frombuffer(data, np.uint8).reshape(height, width, channels)[::-1].copy()


@contextlib.contextmanager
def preserved_state() -> Iterator[None]:
    """Restore the framebuffers, viewport, program, vertex array and capabilities we touch.

    The compositor and scene run inside someone else's context (a window, an OpenXR app's
    frame loop): they leave it as they found it.
    """
    capabilities = (GL.GL_BLEND, GL.GL_DEPTH_TEST, GL.GL_CULL_FACE, GL.GL_SCISSOR_TEST, GL.GL_FRAMEBUFFER_SRGB)
    enabled = {cap: bool(GL.glIsEnabled(cap)) for cap in capabilities}
    draw = GL.glGetIntegerv(GL.GL_DRAW_FRAMEBUFFER_BINDING)
    read = GL.glGetIntegerv(GL.GL_READ_FRAMEBUFFER_BINDING)
    viewport = GL.glGetIntegerv(GL.GL_VIEWPORT)
    program = GL.glGetIntegerv(GL.GL_CURRENT_PROGRAM)
    vertex_array = GL.glGetIntegerv(GL.GL_VERTEX_ARRAY_BINDING)
    try:
        yield
    finally:
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, int(draw))
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, int(read))
        GL.glViewport(*map(int, viewport))
        GL.glUseProgram(int(program))
        GL.glBindVertexArray(int(vertex_array))
        for cap, on in enabled.items():
            (GL.glEnable if on else GL.glDisable)(cap)


class PixelStream(Resource):
    """Streams uint8 pixels to a texture through a pixel buffer object.

    Each upload orphans the buffer (so the driver never waits for the previous transfer), maps
    it write-only, copies the array in, and lets ``glTex(Sub)Image`` read from the buffer: the
    copy to the GPU then runs asynchronously to the CPU.
    """

    def __init__(self):
        self.buffer = GL.glGenBuffers(1)

    @contextlib.contextmanager
    def staged(self, pixels: np.ndarray) -> Iterator[None]:
        """Within the block, the PBO holding ``pixels`` is bound: pass byte offsets as pointers."""
        pixels = np.ascontiguousarray(pixels)
        GL.glBindBuffer(GL.GL_PIXEL_UNPACK_BUFFER, self.buffer)
        GL.glBufferData(GL.GL_PIXEL_UNPACK_BUFFER, pixels.nbytes, None, GL.GL_STREAM_DRAW)
        pointer = GL.glMapBufferRange(GL.GL_PIXEL_UNPACK_BUFFER, 0, pixels.nbytes,
                                      GL.GL_MAP_WRITE_BIT | GL.GL_MAP_INVALIDATE_BUFFER_BIT)
        ctypes.memmove(pointer, pixels.ctypes.data, pixels.nbytes)
        GL.glUnmapBuffer(GL.GL_PIXEL_UNPACK_BUFFER)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        try:
            yield
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_UNPACK_BUFFER, 0)

    def _free(self) -> None:
        GL.glDeleteBuffers(1, [self.buffer])
