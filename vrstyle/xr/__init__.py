"""The OpenXR side of vrstyle: the headset client and the plugin API for existing pyopenxr apps.

One module per concern: :mod:`~vrstyle.xr.runtime` (runtime, instance, headset, errors),
:mod:`~vrstyle.xr.graphics` (GL contexts and session bindings), :mod:`~vrstyle.xr.swapchain`
(formats, eye swapchains), :mod:`~vrstyle.xr.session` (lifecycle, frame loop),
:mod:`~vrstyle.xr.textures` (eye textures to and from numpy), :mod:`~vrstyle.xr.plugin`
(:class:`Stylizer`, the plugin API) and :mod:`~vrstyle.xr.app` (``vrstyle headset``).

Nothing here imports torch: the style networks live in the workers.
"""

import os
import sys

if sys.platform.startswith("linux"):
    # As vrstyle.gl: PyOpenGL on EGL unless told otherwise (pyopenxr would otherwise fix it to
    # GLX for every later GL user in the process); the headset sets it for its binding.
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def __getattr__(name: str):
    # Lazy: importing OpenGL fixes PyOpenGL's platform, which the headset client chooses first.
    if name == "Stylizer":
        from vrstyle.xr.plugin import Stylizer

        return Stylizer
    raise AttributeError(name)
