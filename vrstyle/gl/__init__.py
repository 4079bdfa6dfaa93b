"""OpenGL: contexts, shaders, the tile compositor, the demo scene and the eye display.

GL knows textures, not sockets or pipelines: the compositor takes numpy tiles and a
:class:`tiles.TileGrid`; the desktop mirror that joins it to a pipeline is :mod:`vrstyle.mirror`.
Nothing here imports OpenGL at package import except through the modules that need it.

On Linux, PyOpenGL is pointed at EGL before any module imports it (unless
``PYOPENGL_PLATFORM`` is already set): EGL serves headless contexts (Mesa's surfaceless
platform, no display, no Xvfb) and, through glfw's EGL context API, windows too.
"""

import os
import sys

if sys.platform.startswith("linux"):
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
