"""OpenGL contexts an OpenXR runtime accepts, and the session graphics binding for each.

The contexts are vrstyle.gl's: EGL without a display (Monado's ``XR_MNDX_egl_enable``), or a
glfw window (GLX on X11 and XWayland, WGL on Windows), hidden unless it doubles as the mirror.
The context outlives OpenXR sessions, so a lost runtime is reconnected without reloading the
scene, the compositor or anything else on the GPU.
"""

from __future__ import annotations

import ctypes

import xr

from vrstyle.errors import VrstyleError

MIRROR_SIZE = (1280, 540)
"""Mirror window size, screen pixels (both eyes side by side)."""


def create_context(binding: str, mirror: bool = False):
    """A current GL context for ``binding`` (``egl``, ``glx`` or ``wgl``); close() when done.

    Raises:
        VrstyleError: the context cannot be made (no EGL device, no display, GL too old), or a
            mirror window was asked for without a window system.
    """
    from vrstyle.gl.context import HeadlessContext, WindowContext

    if binding == "egl":
        if mirror:
            raise VrstyleError("the mirror window needs a window-system context: use --graphics glx")
        return HeadlessContext()
    width, height = MIRROR_SIZE if mirror else (64, 64)
    return WindowContext(width, height, "vrstyle headset", visible=mirror, vsync=False)


def session_binding(binding: str, context) -> ctypes.Structure:
    """The ``XrGraphicsBinding*`` structure for the context, current on this thread (keep it alive
    while the session lives; its address goes into ``SessionCreateInfo.next``)."""
    if binding == "egl":
        from OpenGL import EGL

        return xr.GraphicsBindingEGLMNDX(
            get_proc_address=ctypes.cast(EGL.eglGetProcAddress.load(), xr.PFN_xrEglGetProcAddressMNDX),
            display=context.display, config=None, context=context.context)  # a no-config context
    if binding == "glx":
        from OpenGL import GLX

        return xr.GraphicsBindingOpenGLXlibKHR(x_display=GLX.glXGetCurrentDisplay(),
                                               glx_drawable=GLX.glXGetCurrentDrawable(),
                                               glx_context=GLX.glXGetCurrentContext())
    from OpenGL import WGL

    return xr.GraphicsBindingOpenGLWin32KHR(h_dc=WGL.wglGetCurrentDC(), h_glrc=WGL.wglGetCurrentContext())
