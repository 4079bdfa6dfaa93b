"""Eye swapchains: a colour format the runtime offers, one swapchain per view at its recommended size."""

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
    """

    def __init__(self, instance: xr.Instance, system_id: xr.SystemId, session: xr.Session, colour: ColourFormat):
        self.colour = colour
        views = xr.enumerate_view_configuration_views(instance, system_id, xr.ViewConfigurationType.PRIMARY_STEREO)
        self.eyes: list[xr.utils.SwapchainInfo] = []
        with self.building():
            for view in views:
                self.eyes.append(xr.utils.SwapchainInfo(view, session, colour.gl, xr.SwapchainImageOpenGLKHR))
        self.acquired: list[int] = []

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
        return self.acquired

    def release(self) -> None:
        """Hand the acquired images back to the runtime (per frame; not the end of the swapchains)."""
        for eye in self.eyes[:len(self.acquired)]:
            xr.release_swapchain_image(eye.swapchain, xr.SwapchainImageReleaseInfo())
        self.acquired = []

    def projection_views(self, views) -> ctypes.Array:
        """Projection layer views showing each whole swapchain image with the given poses and fields of view."""
        layer_views = (xr.CompositionLayerProjectionView * len(views))()
        for layer_view, view, eye in zip(layer_views, views, self.eyes):
            layer_view.pose = view.pose
            layer_view.fov = view.fov
            layer_view.sub_image.swapchain = eye.swapchain
            layer_view.sub_image.image_rect.offset.x = 0
            layer_view.sub_image.image_rect.offset.y = 0
            layer_view.sub_image.image_rect.extent.width = eye.size[0]
            layer_view.sub_image.image_rect.extent.height = eye.size[1]
        return layer_views

    def _free(self) -> None:
        for eye in self.eyes:
            try:
                xr.destroy_swapchain(eye.swapchain)
            except xr.XrException:  # the runtime may already be gone
                pass
        self.eyes = []
