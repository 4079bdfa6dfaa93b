"""The built-in demo scene: a stereo 3D scene worth stylising, made of nothing but code.

Textured procedural geometry (a stone floor, brick columns, a marble torus and vase, striped
spheres, wooden crates) under a sun and a cloudy sky, moving slowly. It renders per eye into
framebuffer objects with any view and projection, so the headset passes its own eye poses and
fields of view, and reads back as (2, H, W, 3) uint8 for the pipeline.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
from OpenGL import GL

from vrstyle import settings
from vrstyle.gl import transforms as tf
from vrstyle.gl.context import GLError
from vrstyle.gl.geometry import layout, meshes, procedural_textures
from vrstyle.gl.shaders import Program
from vrstyle.gl.textures import Framebuffer, owned_texture, preserved_state, read_pixels
from vrstyle.resources import Resource

SUN_DIRECTION = np.array([0.45, 0.6, 0.35]) / np.linalg.norm([0.45, 0.6, 0.35])
LIGHTING = dict(sun_direction=SUN_DIRECTION, sun_colour=(1.5, 1.35, 1.1), sky_colour=(0.25, 0.45, 0.85),
                horizon_colour=(0.75, 0.8, 0.85), ground_colour=(0.3, 0.25, 0.2), fog_density=0.025)
HEAD_HEIGHT_M = 1.6


class Mesh(Resource):
    """Interleaved (position, normal, uv) vertices with triangle indices, on the GPU."""

    def __init__(self, vertices: np.ndarray, indices: np.ndarray):
        self.count = indices.size
        with self.building():
            self.vao = GL.glGenVertexArrays(1)
            self.on_close(GL.glDeleteVertexArrays, 1, [self.vao])
            self.buffers = [int(b) for b in GL.glGenBuffers(2)]
            self.on_close(GL.glDeleteBuffers, 2, self.buffers)
            GL.glBindVertexArray(self.vao)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.buffers[0])
            GL.glBufferData(GL.GL_ARRAY_BUFFER, vertices.nbytes, vertices.astype(np.float32), GL.GL_STATIC_DRAW)
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.buffers[1])
            GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices.astype(np.uint32), GL.GL_STATIC_DRAW)
            for location, (offset, size) in enumerate(((0, 3), (3, 3), (6, 2))):
                GL.glEnableVertexAttribArray(location)
                GL.glVertexAttribPointer(location, size, GL.GL_FLOAT, GL.GL_FALSE, 32, ctypes.c_void_p(4 * offset))
            GL.glBindVertexArray(0)

    def draw(self) -> None:
        GL.glBindVertexArray(self.vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self.count, GL.GL_UNSIGNED_INT, None)


class DemoScene(Resource):
    """Renders the demo scene for two eyes into textures of the compositor's eye size.

    Args:
        eye_height, eye_width: eye buffer size, px.
        ipd: interpupillary distance, metres (for :meth:`eye_views`; a headset gives its own views).
        samples: multisampling (0 for none; clamped to what the GL offers).
        fov_y_deg: vertical field of view of :meth:`eye_views`.
        keep_depth: also keep each eye's depth buffer for :meth:`read_depth` (a resolve per eye).
    """

    def __init__(self, eye_height: int = settings.EYE_SIZE[0], eye_width: int = settings.EYE_SIZE[1],
                 ipd: float = settings.IPD_M, samples: int = settings.SCENE_SAMPLES,
                 fov_y_deg: float = settings.FOV_Y_DEG, keep_depth: bool = False):
        self.height, self.width, self.ipd, self.fov_y_deg = eye_height, eye_width, ipd, fov_y_deg
        self.things = layout()
        with self.building():
            self.surface_program, self.sky_program = self.own(Program("scene")), self.own(Program("sky"))
            self.meshes = {name: self.own(Mesh(*mesh)) for name, mesh in meshes().items()}
            self.albedo = GL.glGenTextures(1)
            self.on_close(GL.glDeleteTextures, [self.albedo])
            self._upload_albedo(self.albedo, procedural_textures())
            self.eye_textures = [owned_texture(self, eye_width, eye_height) for _ in range(2)]
            self.samples = min(samples, int(GL.glGetIntegerv(GL.GL_MAX_SAMPLES)))
            self.draw_fbo, self.eye_fbo = self.own(Framebuffer()), self.own(Framebuffer())
            self.colour_rb, self.depth_rb = GL.glGenRenderbuffers(2)
            self.on_close(GL.glDeleteRenderbuffers, 2, [self.colour_rb, self.depth_rb])
            for renderbuffer, fmt in ((self.colour_rb, GL.GL_RGBA8), (self.depth_rb, GL.GL_DEPTH_COMPONENT24)):
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, renderbuffer)
                GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, self.samples, fmt, eye_width, eye_height)
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.draw_fbo.id)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self.colour_rb)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self.depth_rb)
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
            self.empty_vao = GL.glGenVertexArrays(1)
            self.on_close(GL.glDeleteVertexArrays, 1, [self.empty_vao])
            self.depth_fbos = [self._depth_target() for _ in range(2)] if keep_depth else []

    def _depth_target(self) -> Framebuffer:
        """A single-sampled framebuffer holding one eye's resolved depth."""
        framebuffer = self.own(Framebuffer())
        renderbuffer = GL.glGenRenderbuffers(1)
        self.on_close(GL.glDeleteRenderbuffers, 1, [renderbuffer])
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, renderbuffer)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, self.width, self.height)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, framebuffer.id)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, renderbuffer)
        GL.glDrawBuffer(GL.GL_NONE)
        GL.glReadBuffer(GL.GL_NONE)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        return framebuffer

    @staticmethod
    def _upload_albedo(texture: int, maps: np.ndarray) -> None:
        layers, size = maps.shape[:2]
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        GL.glTexImage3D(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_SRGB8_ALPHA8, size, size, layers, 0, GL.GL_RGB,
                        GL.GL_UNSIGNED_BYTE, np.ascontiguousarray(maps))
        GL.glGenerateMipmap(GL.GL_TEXTURE_2D_ARRAY)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR_MIPMAP_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_WRAP_S, GL.GL_REPEAT)
        GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, GL.GL_TEXTURE_WRAP_T, GL.GL_REPEAT)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, 0)

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
                if self.depth_fbos:
                    GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self.depth_fbos[eye].id)
                    GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, self.width, self.height,
                                         GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
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

    def read(self, into: np.ndarray | None = None) -> np.ndarray:
        """(2, height, width, 3) uint8 top-down pixels of the last rendered eyes: a new array, or
        read bottom-up into ``into`` (e.g. :meth:`vrstyle.pipeline.FramePipeline.frame_buffer`)
        and returned as its rows reversed."""
        with preserved_state():
            eyes = []
            for eye, texture in enumerate(self.eye_textures):
                self.eye_fbo.attach(texture, GL.GL_READ_FRAMEBUFFER)
                eyes.append(read_pixels(self.width, self.height, into=None if into is None else into[eye]))
        return np.stack(eyes) if into is None else into[:, ::-1]

    def read_depth(self) -> np.ndarray:
        """(2, height, width) float32 top-down window depths (0 near, 1 far) of the last rendered
        eyes; needs ``keep_depth``. :func:`vrstyle.reproject.unproject` turns them into points."""
        if not self.depth_fbos:
            raise GLError("this scene keeps no depth: create it with keep_depth=True")
        with preserved_state():
            depths = []
            for framebuffer in self.depth_fbos:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, framebuffer.id)
                GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 4)
                data = GL.glReadPixels(0, 0, self.width, self.height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
                depths.append(np.frombuffer(data, np.float32).reshape(self.height, self.width)[::-1])
        return np.stack(depths)

    def render_stereo(self, time: float) -> np.ndarray:
        """The default viewer's stereo frame at ``time`` as (2, H, W, 3) uint8."""
        self.render(*self.eye_views(time), time)
        return self.read()
