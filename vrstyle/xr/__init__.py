"""The OpenXR side of vrstyle: the headset client and the plugin API for existing pyopenxr apps.

One module per concern: :mod:`~vrstyle.xr.runtime` (runtime, instance, headset, errors),
:mod:`~vrstyle.xr.graphics` (GL contexts and session bindings), :mod:`~vrstyle.xr.swapchain`
(formats, eye swapchains), :mod:`~vrstyle.xr.session` (lifecycle, frame loop),
:mod:`~vrstyle.xr.textures` (eye textures to and from numpy), :mod:`~vrstyle.xr.plugin`
(:class:`Stylizer`, the plugin API), :mod:`~vrstyle.xr.mirror` (the headset's mirror window) and
:mod:`~vrstyle.xr.app` (``vrstyle headset``).

Nothing here imports torch: the style networks live in the workers.

Importing this package imports pyopenxr with PyOpenGL's platform left as PyOpenGL installed it
(EGL on Linux unless ``PYOPENGL_PLATFORM`` says otherwise, as vrstyle.gl has it): pyopenxr swaps
in GLX's platform object on import, which breaks EGL contexts elsewhere in the process.
"""

import os
import sys

if sys.platform.startswith("linux"):
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

if "xr" not in sys.modules:
    import OpenGL.platform as _gl_platform

    _installed = _gl_platform.PLATFORM
    import xr  # noqa: F401

    _gl_platform.PLATFORM = _installed


def __getattr__(name: str):
    if name == "Stylizer":
        from vrstyle.xr.plugin import Stylizer

        return Stylizer
    raise AttributeError(name)
