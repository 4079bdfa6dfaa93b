"""Eye textures to and from numpy: upright sRGB uint8 images, whatever the texture stores.

Style networks see sRGB-encoded 8-bit images, upright. GL textures are bottom-up, and a linear
format (RGBA16F, RGBA8) holds linear light (OpenXR reads non-sRGB swapchains as linear), so
those are encoded to sRGB on the way out and decoded on the way in. sRGB textures hold the
encoded bytes themselves: they round-trip exactly.
"""

from __future__ import annotations

import numpy as np
from OpenGL import GL

from vrstyle.gl.context import GLError
from vrstyle.gl.textures import SRGB_INTERNAL_FORMATS, texture_format, texture_size

DEPTH_INTERNAL_FORMATS = frozenset({
    GL.GL_DEPTH_COMPONENT, GL.GL_DEPTH_COMPONENT16, GL.GL_DEPTH_COMPONENT24, GL.GL_DEPTH_COMPONENT32,
    GL.GL_DEPTH_COMPONENT32F, GL.GL_DEPTH_STENCIL, GL.GL_DEPTH24_STENCIL8, GL.GL_DEPTH32F_STENCIL8})


def _decode_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


SRGB_DECODE = _decode_table()
"""Linear value of every sRGB-encoded byte (IEC 61966-2-1)."""


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded uint8 -> linear float32 in [0, 1].

    >>> srgb_to_linear(np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
    """
    return SRGB_DECODE[encoded]


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear float in [0, 1] -> sRGB-encoded uint8 (clipped, rounded).

    >>> image = np.arange(256, dtype=np.uint8)
    >>> bool((linear_to_srgb(srgb_to_linear(image)) == image).all())
    True
    """
    c = np.clip(linear, 0.0, 1.0)
    encoded = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.rint(encoded * 255.0).astype(np.uint8)


def texture_info(texture: int) -> tuple[int, int, bool]:
    """(width, height, stores sRGB) of a 2D texture."""
    return *texture_size(texture), texture_format(texture) in SRGB_INTERNAL_FORMATS


def read_texture(texture: int, into: np.ndarray | None = None) -> np.ndarray:
    """An eye texture as an upright (H, W, 3) uint8 sRGB image: an upside-down view of ``into``.

    GL reads rows bottom-up; they stay so in ``into`` and the view turns them upright, so no
    copy flips them (the pipeline's frame ring takes them bottom-up, its workers cut from the
    rows reversed).

    Args:
        texture: a GL_TEXTURE_2D name, any colour format.
        into: a C-contiguous (H, W, 3) uint8 array of the texture's size to read into, e.g.
            one reused every frame (None: a new one).

    Raises:
        GLError: ``into`` does not fit the texture.
    """
    width, height, srgb = texture_info(texture)
    if into is None:
        into = np.empty((height, width, 3), np.uint8)
    elif into.shape != (height, width, 3) or into.dtype != np.uint8 or not into.flags.c_contiguous:
        raise GLError(f"cannot read a {width}x{height} texture into a {into.shape} {into.dtype} array")
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
    if srgb:  # glGetTexImage returns sRGB texels as stored
        GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, into)
    else:
        data = GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_RGB, GL.GL_FLOAT)
        into[...] = linear_to_srgb(np.frombuffer(data, np.float32).reshape(height, width, 3))
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    return into[::-1]


def read_depth_texture(texture: int, shape: tuple[int, int]) -> np.ndarray:
    """An eye's depth texture as (H, W) float32 top-down window depths (0 near, 1 far).

    Raises:
        GLError: the texture is not of a depth format, or not ``shape`` (height, width).
    """
    (width, height), internal = texture_size(texture), texture_format(texture)
    if internal not in DEPTH_INTERNAL_FORMATS:
        raise GLError(f"texture {texture} is not a depth texture (internal format 0x{internal:x})")
    if (height, width) != tuple(shape):
        raise GLError(f"depth texture {texture} is {width}x{height}, the eyes are {shape[1]}x{shape[0]}")
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 4)
    data = GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    return np.frombuffer(data, np.float32).reshape(height, width)[::-1].copy()


def write_depth_texture(texture: int, depth: np.ndarray) -> None:
    """Replace a depth texture's values with (H, W) top-down window depths of its size."""
    height, width = depth.shape
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
    GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT,
                       np.ascontiguousarray(depth[::-1], dtype=np.float32))
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)


def write_texture(texture: int, image: np.ndarray) -> None:
    """Replace an eye texture's pixels with an upright (H, W, 3) uint8 sRGB image of its size."""
    width, height, srgb = texture_info(texture)
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise GLError(f"image {image.shape} {image.dtype} does not fit a {width}x{height} texture")
    flipped = np.ascontiguousarray(image[::-1])
    pixels, kind = (flipped, GL.GL_UNSIGNED_BYTE) if srgb else (srgb_to_linear(flipped), GL.GL_FLOAT)
    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
    GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, GL.GL_RGB, kind, pixels)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
