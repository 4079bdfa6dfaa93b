"""OpenGL: contexts, shaders, the tile compositor, the demo scene and the mirror window.

GL knows textures, not sockets: the compositor takes numpy tiles and a :class:`tiles.TileGrid`.
Nothing here imports OpenGL at package import except through the modules that need it.

On Linux, PyOpenGL is pointed at EGL before any module imports it (unless
``PYOPENGL_PLATFORM`` is already set): EGL serves headless contexts (Mesa's surfaceless
platform, no display, no Xvfb) and, through glfw's EGL context API, windows too.
"""

import os
import sys

if sys.platform.startswith("linux"):
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
