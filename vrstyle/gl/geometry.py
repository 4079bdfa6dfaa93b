"""The demo scene's content in numpy: meshes, procedural textures and where everything is.

No OpenGL here (testable anywhere); :mod:`vrstyle.gl.scene` puts it on the GPU and renders it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from vrstyle.gl import transforms as tf

TEXTURE_SIZE = 256


def surface(position: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: int, cols: int,
            v_range: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """A parametric surface ``position(u, v) -> (..., 3)`` over u, v in [0, 1] as a triangle mesh.

    Normals are ``d/du x d/dv`` by central differences, so the parametrisation's orientation
    decides which side is out. Returns (vertices (N, 8), indices (M,)).
    """
    u, v = np.meshgrid(np.linspace(0, 1, cols + 1), np.linspace(*v_range, rows + 1))
    eps = 1e-4
    du = position(u + eps, v) - position(u - eps, v)
    dv = position(u, v + eps) - position(u, v - eps)
    normal = np.cross(du, dv)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    vertices = np.concatenate([position(u, v), normal, np.stack([u, v], -1)], -1).reshape(-1, 8)
    corner = (np.arange(rows)[:, None] * (cols + 1) + np.arange(cols)[None, :]).ravel()
    quads = np.stack([corner, corner + 1, corner + cols + 2, corner, corner + cols + 2, corner + cols + 1], -1)
    return vertices, quads.ravel()


def sphere(u, v):
    theta, phi = 2 * np.pi * u, np.pi * v
    return np.stack([np.sin(phi) * np.cos(theta), -np.cos(phi), -np.sin(phi) * np.sin(theta)], -1)


def torus(u, v, ring: float = 1.0, tube: float = 0.35):
    theta, phi = 2 * np.pi * u, 2 * np.pi * v
    radius = ring + tube * np.cos(phi)
    return np.stack([radius * np.cos(theta), tube * np.sin(phi), -radius * np.sin(theta)], -1)


def lathe(profile: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]):
    """Surface of revolution about y of ``profile(v) -> (radius, height)``."""

    def position(u, v):
        radius, height = profile(v)
        theta = 2 * np.pi * u
        return np.stack([radius * np.cos(theta), height, -radius * np.sin(theta)], -1)

    return position


def box() -> tuple[np.ndarray, np.ndarray]:
    """A unit cube centred on the origin, each face with its own normal and uv."""
    vertices, indices = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            a, b = np.roll(np.eye(3), 1, axis=0)[axis], np.roll(np.eye(3), 2, axis=0)[axis]
            if sign < 0:
                a, b = b, a
            base = len(vertices)
            for s, t in ((0, 0), (1, 0), (1, 1), (0, 1)):
                vertices.append(np.concatenate([0.5 * normal + (s - 0.5) * a + (t - 0.5) * b, normal, (s, t)]))
            indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return np.array(vertices), np.array(indices)


def plane(size: float) -> tuple[np.ndarray, np.ndarray]:
    half = size / 2
    vertices = np.array([[-half, 0, half, 0, 1, 0, 0, 0], [half, 0, half, 0, 1, 0, 1, 0],
                         [half, 0, -half, 0, 1, 0, 1, 1], [-half, 0, -half, 0, 1, 0, 0, 1]])
    return vertices, np.array([0, 1, 2, 0, 2, 3])


def fractal_noise(size: int, rng: np.random.Generator, falloff: float = 1.6) -> np.ndarray:
    """Tileable 1/f noise in [0, 1] (random phases in the Fourier domain), so textures repeat seamlessly."""
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / frequency ** falloff
    spectrum[0, 0] = 0
    noise = np.fft.ifft2(spectrum).real
    return (noise - noise.min()) / (noise.max() - noise.min())


def procedural_textures(size: int = TEXTURE_SIZE, seed: int = 7) -> np.ndarray:
    """(layers, size, size, 3) uint8 sRGB albedo maps: stone, brick, marble, stripes, wood."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    noise = [fractal_noise(size, rng) for _ in range(4)]

    def colour(a, b, t):
        return np.asarray(a) + (np.asarray(b) - np.asarray(a)) * t[..., None]

    cells = 4
    cell = np.floor(x * cells) + cells * np.floor(y * cells)
    shade = np.asarray(rng.uniform(0.75, 1.1, cells * cells))[cell.astype(int)]
    grout = np.minimum(np.abs(np.sin(np.pi * x * cells)), np.abs(np.sin(np.pi * y * cells))) < 0.06
    stone = colour((120, 110, 100), (200, 185, 160), noise[0]) * shade[..., None]
    stone[grout] = (60, 55, 50)

    rows = 8
    row = np.floor(y * rows)
    offset = (row % 2) * 0.5 / 4
    mortar = (np.abs(np.sin(np.pi * y * rows)) < 0.12) | (np.abs(np.sin(np.pi * (x + offset) * 4)) < 0.08)
    brick = colour((150, 55, 40), (200, 95, 60), noise[1]) * rng.uniform(0.8, 1.15, rows)[row.astype(int)][..., None]
    brick[mortar] = (205, 200, 185)

    veins = np.abs(np.sin(2 * np.pi * (x + y) * 2 + 6.0 * noise[2])) ** 0.25
    marble = colour((60, 80, 100), (235, 235, 230), veins)

    hues = np.array([(230, 60, 50), (245, 200, 40), (40, 160, 90), (40, 110, 220), (150, 60, 200)])
    stripes = hues[(np.floor(y * 10) % len(hues)).astype(int)] * (0.85 + 0.15 * noise[3][..., None])

    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (8 * np.hypot(x - 0.5, 0.2 * (y - 0.5)) + 1.5 * noise[3]))
    wood = colour((110, 65, 30), (190, 130, 70), rings)
    return np.clip(np.stack([stone, brick, marble, stripes, wood]), 0, 255).astype(np.uint8)


STONE, BRICK, MARBLE, STRIPES, WOOD = range(5)


@dataclass
class Thing:
    """An object of the scene: a mesh, where it is at a time, and its material."""

    mesh: str
    place: Callable[[float], np.ndarray]
    layer: int
    uv_scale: tuple[float, float] = (1.0, 1.0)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shininess: float = 32.0
    specular: float = 0.2


def layout() -> list[Thing]:
    """The scene's objects: a ring of columns around a floating torus, spheres, crates and a vase."""
    things = [Thing("plane", lambda t: np.eye(4), STONE, (24, 24), specular=0.05)]
    for k in range(8):
        angle = 2 * np.pi * k / 8 + 0.2
        where = tf.translation(5 * math.cos(angle), 0, -3 + 5 * math.sin(angle))
        things.append(Thing("column", lambda t, m=where: m, BRICK, (4, 3), specular=0.05))
    things.append(Thing("torus", lambda t: tf.translation(0, 1.5 + 0.1 * math.sin(0.7 * t), -3)
                        @ tf.rotation((0.3, 1, 0.2), 0.25 * t) @ tf.scale(0.8), MARBLE, (3, 1), shininess=64, specular=0.6))
    for k, (x, z, size) in enumerate(((-1.8, -1.8, 0.35), (1.7, -2.2, 0.45), (0.6, -0.9, 0.25))):
        things.append(Thing("sphere", lambda t, x=x, z=z, s=size, k=k: tf.translation(x, s + 0.15 * abs(math.sin(1.1 * t + k)), z)
                            @ tf.rotation((0, 1, 0), 0.5 * t + k) @ tf.scale(s), STRIPES, shininess=48, specular=0.5))
    for k, (x, z, size) in enumerate(((-2.6, -4.0, 0.7), (2.4, -4.6, 0.9), (-0.9, -5.5, 0.5))):
        things.append(Thing("box", lambda t, x=x, z=z, s=size, k=k: tf.translation(x, s / 2, z)
                            @ tf.rotation((0, 1, 0), 0.1 * t + k) @ tf.scale(s), WOOD))
    things.append(Thing("vase", lambda t: tf.translation(1.1, 0, -1.6) @ tf.rotation((0, 1, 0), 0.2 * t), MARBLE,
                        (2, 1), tint=(0.9, 0.75, 0.6), shininess=80, specular=0.7))
    return things


def meshes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    column = lathe(lambda v: (0.3 + 0.08 * (np.abs(v - 0.5) > 0.45) - 0.03 * np.cos(40 * np.pi * v) * (np.abs(v - 0.5) <= 0.45), 3.2 * v))
    vase = lathe(lambda v: ((0.12 + 0.22 * np.sin(np.pi * v * 0.9) ** 2) * np.clip(12 * (1 - v), 0, 1) ** 0.5, 0.9 * v))
    return {"plane": plane(60.0), "box": box(), "sphere": surface(sphere, 32, 48, (1e-3, 1 - 1e-3)),
            "torus": surface(torus, 32, 64), "column": surface(column, 64, 32), "vase": surface(vase, 48, 48)}
