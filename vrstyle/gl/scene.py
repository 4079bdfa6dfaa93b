"""The built-in demo scene: a stereo 3D scene worth stylising, made of nothing but code.

Textured procedural geometry (a stone floor, brick columns, a marble torus and vase, striped
spheres, wooden crates) under a sun and a cloudy sky, moving slowly. It renders per eye into
framebuffer objects with any view and projection, so the headset passes its own eye poses and
fields of view, and reads back as (2, H, W, 3) uint8 for the pipeline.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from OpenGL import GL

from vrstyle import settings
from vrstyle.gl import transforms as tf
from vrstyle.gl.shaders import Program
from vrstyle.gl.textures import Framebuffer, create_texture, preserved_state, read_pixels

TEXTURE_SIZE = 256
SUN_DIRECTION = np.array([0.45, 0.6, 0.35]) / np.linalg.norm([0.45, 0.6, 0.35])
LIGHTING = dict(sun_direction=SUN_DIRECTION, sun_colour=(1.5, 1.35, 1.1), sky_colour=(0.25, 0.45, 0.85),
                horizon_colour=(0.75, 0.8, 0.85), ground_colour=(0.3, 0.25, 0.2), fog_density=0.025)
HEAD_HEIGHT_M = 1.6


@dataclass
class Mesh:
    """Interleaved (position, normal, uv) vertices with triangle indices, on the GPU."""

    vao: int
    buffers: tuple[int, int]
    count: int

    @classmethod
    def upload(cls, vertices: np.ndarray, indices: np.ndarray) -> "Mesh":
        vao = GL.glGenVertexArrays(1)
        GL.glBindVertexArray(vao)
        vbo, ebo = GL.glGenBuffers(2)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, vertices.nbytes, vertices.astype(np.float32), GL.GL_STATIC_DRAW)
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ebo)
        GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices.astype(np.uint32), GL.GL_STATIC_DRAW)
        for location, (offset, size) in enumerate(((0, 3), (3, 3), (6, 2))):
            GL.glEnableVertexAttribArray(location)
            GL.glVertexAttribPointer(location, size, GL.GL_FLOAT, GL.GL_FALSE, 32, ctypes.c_void_p(4 * offset))
        GL.glBindVertexArray(0)
        return cls(vao, (int(vbo), int(ebo)), indices.size)

    def draw(self) -> None:
        GL.glBindVertexArray(self.vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self.count, GL.GL_UNSIGNED_INT, None)

    def delete(self) -> None:
        GL.glDeleteVertexArrays(1, [self.vao])
        GL.glDeleteBuffers(2, list(self.buffers))


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


class DemoScene:
    """Renders the demo scene for two eyes into textures of the compositor's eye size.

    Args:
        eye_height, eye_width: eye buffer size, px.
        ipd: interpupillary distance, metres (for :meth:`eye_views`; a headset gives its own views).
        samples: multisampling (0 for none; clamped to what the GL offers).
        fov_y_deg: vertical field of view of :meth:`eye_views`.
    """

    def __init__(self, eye_height: int = settings.EYE_SIZE[0], eye_width: int = settings.EYE_SIZE[1],
                 ipd: float = settings.IPD_M, samples: int = settings.SCENE_SAMPLES,
                 fov_y_deg: float = settings.FOV_Y_DEG):
        self.height, self.width, self.ipd, self.fov_y_deg = eye_height, eye_width, ipd, fov_y_deg
        self.surface_program, self.sky_program = Program("scene"), Program("sky")
        self.meshes = {name: Mesh.upload(*mesh) for name, mesh in meshes().items()}
        self.things = layout()
        self.albedo = self._upload_albedo(procedural_textures())
        self.eye_textures = [create_texture(eye_width, eye_height) for _ in range(2)]
        self.samples = min(samples, int(GL.glGetIntegerv(GL.GL_MAX_SAMPLES)))
        self.draw_fbo, self.eye_fbo = Framebuffer(), Framebuffer()
        self.colour_rb, self.depth_rb = GL.glGenRenderbuffers(2)
        for renderbuffer, fmt in ((self.colour_rb, GL.GL_RGBA8), (self.depth_rb, GL.GL_DEPTH_COMPONENT24)):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, renderbuffer)
            GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, self.samples, fmt, eye_width, eye_height)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.draw_fbo.id)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self.colour_rb)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self.depth_rb)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        self.empty_vao = GL.glGenVertexArrays(1)

    @staticmethod
    def _upload_albedo(maps: np.ndarray) -> int:
        layers, size = maps.shape[:2]
        texture = GL.glGenTextures(1)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        GL.glTexImage3D(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_SRGB8_ALPHA8, size, size, layers, 0, GL.GL_RGB,
                        GL.GL_UNSIGNED_BYTE, np.ascontiguousarray(maps))
        GL.glGenerateMipmap(GL.GL_TEXTURE_2D_ARRAY)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR_MIPMAP_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_WRAP_S, GL.GL_REPEAT)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_WRAP_T, GL.GL_REPEAT)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, 0)
        return texture

    def head_pose(self, time: float) -> np.ndarray:
        """The default viewer: standing before the torus, swaying slowly."""
        eye = (0.6 * math.sin(0.15 * time), HEAD_HEIGHT_M + 0.05 * math.sin(0.23 * time), 2.0)
        return tf.look_at(eye, (0.0, 1.1, -3.0))

    def eye_views(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(views (2, 4, 4), projections (2, 4, 4)) of the default viewer's eyes at ``time``."""
        poses = tf.stereo_eye_poses(self.head_pose(time), self.ipd)
        projection = tf.fov_projection(*tf.symmetric_fov(self.fov_y_deg, self.width / self.height))
        return np.linalg.inv(poses), np.stack([projection, projection])

    def render(self, views: np.ndarray, projections: np.ndarray, time: float) -> list[int]:
        """Render both eyes; returns the eye textures (RGBA8 holding sRGB bytes, GL orientation).

        Args:
            views: (2, 4, 4) world-to-eye matrices (inverse eye poses; a headset's located views).
            projections: (2, 4, 4) eye projections (e.g. :func:`transforms.fov_projection` of a headset's FOVs).
            time: scene time, seconds (drives the motion).
        """
        with preserved_state():
            GL.glViewport(0, 0, self.width, self.height)
            GL.glDisable(GL.GL_BLEND)
            GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)
            GL.glDisable(GL.GL_SCISSOR_TEST)
            GL.glActiveTexture(GL.GL_TEXTURE0)
            for eye in range(2):
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.draw_fbo.id)
                GL.glClear(GL.GL_DEPTH_BUFFER_BIT)
                self._draw_sky(views[eye], projections[eye], time)
                self._draw_things(views[eye], projections[eye], time)
                self.eye_fbo.attach(self.eye_textures[eye], GL.GL_DRAW_FRAMEBUFFER)
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.draw_fbo.id)
                GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, self.width, self.height,
                                     GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
        return list(self.eye_textures)

    def _draw_sky(self, view: np.ndarray, projection: np.ndarray, time: float) -> None:
        rotation = view.copy()
        rotation[:3, 3] = 0
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDepthMask(GL.GL_FALSE)
        self.sky_program.use().set(inverse_view_projection=np.linalg.inv(projection @ rotation), time=float(time),
                                   **LIGHTING)
        GL.glBindVertexArray(self.empty_vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        GL.glDepthMask(GL.GL_TRUE)

    def _draw_things(self, view: np.ndarray, projection: np.ndarray, time: float) -> None:
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_CULL_FACE)
        eye_position = np.linalg.inv(view)[:3, 3]
        program = self.surface_program.use().set(view=view, projection=projection, eye_position=eye_position,
                                                 albedo_maps=0, **LIGHTING)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.albedo)
        for thing in self.things:
            model = thing.place(time)
            program.set(model=model, normal_matrix=np.linalg.inv(model[:3, :3]).T, albedo_layer=thing.layer,
                        uv_scale=thing.uv_scale, tint=thing.tint, shininess=thing.shininess, specular=thing.specular)
            self.meshes[thing.mesh].draw()
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDisable(GL.GL_DEPTH_TEST)

    def read(self) -> np.ndarray:
        """(2, height, width, 3) uint8 top-down pixels of the last rendered eyes."""
        with preserved_state():
            eyes = []
            for texture in self.eye_textures:
                self.eye_fbo.attach(texture, GL.GL_READ_FRAMEBUFFER)
                eyes.append(read_pixels(self.width, self.height))
        return np.stack(eyes)

    def render_stereo(self, time: float) -> np.ndarray:
        """The default viewer's stereo frame at ``time`` as (2, H, W, 3) uint8."""
        self.render(*self.eye_views(time), time)
        return self.read()

    def delete(self) -> None:
        for mesh in self.meshes.values():
            mesh.delete()
        GL.glDeleteTextures([self.albedo, *self.eye_textures])
        GL.glDeleteRenderbuffers(2, [self.colour_rb, self.depth_rb])
        GL.glDeleteVertexArrays(1, [self.empty_vao])
        self.draw_fbo.delete()
        self.eye_fbo.delete()
        self.surface_program.delete()
        self.sky_program.delete()


class SceneSource:
    """The demo scene as a frame source (for the mirror): the default viewer's eyes at each time."""

    name = "demo scene"

    def __init__(self, scene: DemoScene):
        self.scene = scene
        self.eye_shape = (scene.height, scene.width)

    def frame(self, time: float) -> np.ndarray:
        return self.scene.render_stereo(time)

    def step(self, delta: int) -> None:
        pass
