"""Eye swapchains: a colour format the runtime offers, one swapchain per view at its recommended size,
and where the runtime takes depth (``XR_KHR_composition_layer_depth``) a depth swapchain per view."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import xr
import xr.utils
from OpenGL import GL

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource

SRGB_FORMATS = ("GL_SRGB8_ALPHA8", "GL_SRGB8")
DEPTH_FORMATS = ("GL_DEPTH_COMPONENT32F", "GL_DEPTH_COMPONENT24", "GL_DEPTH_COMPONENT16")
"""Depth swapchain formats, most precise first."""


@dataclass(frozen=True)
class ColourFormat:
    """A swapchain colour format: its GL name and whether it stores sRGB-encoded values."""

    name: str
    gl: int

    @property
    def srgb(self) -> bool:
        return self.name in SRGB_FORMATS


def choose_format(offered: list[int], preference: tuple[str, ...] = settings.XR_SWAPCHAIN_FORMATS) -> ColourFormat:
    """The first format of ``preference`` that the runtime offers.

    Raises:
        VrstyleError: none of them is offered (the message lists what is).

    >>> choose_format([GL.GL_RGBA16F, GL.GL_SRGB8_ALPHA8]).name
    'GL_SRGB8_ALPHA8'
    >>> choose_format([GL.GL_SRGB8]).srgb
    True
    """
    for name in preference:
        if int(getattr(GL, name)) in offered:
            return ColourFormat(name, int(getattr(GL, name)))
    raise VrstyleError(f"the OpenXR runtime offers no colour swapchain format vrstyle can use: offered "
                       f"{', '.join(hex(f) for f in offered)}, usable {', '.join(preference)}")


class EyeSwapchains(Resource):
    """One colour swapchain per view of the stereo configuration, at the recommended size.

    Args:
        instance, system_id, session: the OpenXR objects to create them for.
        colour: the colour format (see :func:`choose_format`).
        depth: also a depth swapchain per view, in the first of :data:`DEPTH_FORMATS` the
            runtime offers (none if it offers none).
    """

    def __init__(self, instance: xr.Instance, system_id: xr.SystemId, session: xr.Session, colour: ColourFormat,
                 depth: bool = False):
        self.colour = colour
        views = xr.enumerate_view_configuration_views(instance, system_id, xr.ViewConfigurationType.PRIMARY_STEREO)
        self.eyes: list[xr.utils.SwapchainInfo] = []
        self.depth_eyes: list[tuple[xr.Swapchain, list]] = []
        offered = list(xr.enumerate_swapchain_formats(session)) if depth else []
        depth_format = next((int(getattr(GL, n)) for n in DEPTH_FORMATS if int(getattr(GL, n)) in offered), None)
        with self.building():
            for view in views:
                self.eyes.append(xr.utils.SwapchainInfo(view, session, colour.gl, xr.SwapchainImageOpenGLKHR))
                if depth_format is not None:
                    swapchain = xr.create_swapchain(session, xr.SwapchainCreateInfo(
                        usage_flags=xr.SwapchainUsageFlags.DEPTH_STENCIL_ATTACHMENT_BIT, format=depth_format,
                        sample_count=1, width=view.recommended_image_rect_width,
                        height=view.recommended_image_rect_height, face_count=1, array_size=1, mip_count=1))
                    self.depth_eyes.append((swapchain, xr.enumerate_swapchain_images(swapchain,
                                                                                     xr.SwapchainImageOpenGLKHR)))
        self.acquired: list[int] = []
        self.acquired_depth: list[int] = []
        self._depth_infos = None  # alive until xrEndFrame has read the layer

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each eye."""
        return [eye.size for eye in self.eyes]

    def acquire(self) -> list[int]:
        """Acquire and wait for the next image of every eye; returns their GL texture names."""
        self.acquired = []
        for eye in self.eyes:
            index = xr.acquire_swapchain_image(eye.swapchain, xr.SwapchainImageAcquireInfo())
            xr.wait_swapchain_image(eye.swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
            self.acquired.append(eye.images[index].image)
        self.acquired_depth = []
        for swapchain, images in self.depth_eyes:
            index = xr.acquire_swapchain_image(swapchain, xr.SwapchainImageAcquireInfo())
            xr.wait_swapchain_image(swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
            self.acquired_depth.append(images[index].image)
        return self.acquired

    def release(self) -> None:
        """Hand the acquired images back to the runtime (per frame; not the end of the swapchains)."""
        for eye in self.eyes[:len(self.acquired)]:
            xr.release_swapchain_image(eye.swapchain, xr.SwapchainImageReleaseInfo())
        for swapchain, _ in self.depth_eyes[:len(self.acquired_depth)]:
            xr.release_swapchain_image(swapchain, xr.SwapchainImageReleaseInfo())
        self.acquired = self.acquired_depth = []

    def projection_views(self, views, depth_range: tuple[float, float] | None = None) -> ctypes.Array:
        """Projection layer views showing each whole swapchain image with the given poses and
        fields of view; with ``depth_range`` (near, far distances) each carries its depth image."""
        layer_views = (xr.CompositionLayerProjectionView * len(views))()
        self._depth_infos = (xr.CompositionLayerDepthInfoKHR * len(views))() if depth_range else None
        for index, (layer_view, view, eye) in enumerate(zip(layer_views, views, self.eyes)):
            layer_view.type = xr.StructureType.COMPOSITION_LAYER_PROJECTION_VIEW  # ctypes arrays start zeroed
            layer_view.pose = view.pose
            layer_view.fov = view.fov
            _whole(layer_view.sub_image, eye.swapchain, eye.size)
            if self._depth_infos is not None:
                info = self._depth_infos[index]
                info.type = xr.StructureType.COMPOSITION_LAYER_DEPTH_INFO_KHR
                _whole(info.sub_image, self.depth_eyes[index][0], eye.size)
                info.min_depth, info.max_depth = 0.0, 1.0
                info.near_z, info.far_z = depth_range
                layer_view.next = ctypes.cast(ctypes.pointer(info), ctypes.c_void_p)
        return layer_views

    def _free(self) -> None:
        for swapchain in [eye.swapchain for eye in self.eyes] + [swapchain for swapchain, _ in self.depth_eyes]:
            try:
                xr.destroy_swapchain(swapchain)
            except xr.XrException:  # the runtime may already be gone
                pass
        self.eyes, self.depth_eyes = [], []


def _whole(sub_image, swapchain: xr.Swapchain, size: tuple[int, int]) -> None:
    """Point a swapchain sub-image at the whole of one image."""
    sub_image.swapchain = swapchain
    sub_image.image_rect.offset.x = 0
    sub_image.image_rect.offset.y = 0
    sub_image.image_rect.extent.width = size[0]
    sub_image.image_rect.extent.height = size[1]
