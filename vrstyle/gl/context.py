"""OpenGL contexts: headless through EGL, windows through glfw, each with one-line errors.

Every context is a core profile of at least :data:`vrstyle.settings.GL_VERSION`. A missing
display, a missing GL library or a GL older than needed raises :class:`GLError` saying which.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource

log = logging.getLogger(__name__)

EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
"""Mesa's platform with no window system at all (EGL_MESA_platform_surfaceless)."""


class GLError(VrstyleError):
    """No display, no OpenGL, a GL too old, or a shader that does not build: one line saying which."""


def import_gl():
    """``OpenGL.GL``, or :class:`GLError` naming what is missing (PyOpenGL or the GL libraries)."""
    try:
        from OpenGL import GL
    except ImportError as exc:
        raise GLError(f"no OpenGL: {exc} (install vrstyle[gl] and the system's GL libraries, "
                      "e.g. libgl1 and libegl1)") from None
    except Exception as exc:  # PyOpenGL raises plain errors when libGL/libEGL cannot be loaded
        raise GLError(f"no OpenGL library could be loaded ({exc}); install the system's GL libraries, "
                      "e.g. libgl1, libegl1 and libegl-mesa0") from None
    return GL


def current_version() -> tuple[int, int]:
    """(major, minor) OpenGL version of the current context."""
    GL = import_gl()
    return int(GL.glGetIntegerv(GL.GL_MAJOR_VERSION)), int(GL.glGetIntegerv(GL.GL_MINOR_VERSION))


def describe_current() -> str:
    """'4.5 (Core Profile) Mesa 22.3.6 on llvmpipe (...)' for the current context."""
    GL = import_gl()
    version, renderer = GL.glGetString(GL.GL_VERSION), GL.glGetString(GL.GL_RENDERER)
    return f"{version.decode()} on {renderer.decode()}"


def check_version(required: tuple[int, int]) -> None:
    """Raise :class:`GLError` unless the current context is at least OpenGL ``required``."""
    have = current_version()
    if have < tuple(required):
        raise GLError(f"OpenGL {required[0]}.{required[1]} core is needed but this context offers only "
                      f"{describe_current()}")


class HeadlessContext(Resource):
    """An OpenGL core context with no window and no display: EGL on Mesa's surfaceless platform.

    Renders into framebuffer objects only (there is no default framebuffer). Falls back to
    EGL's default display where the surfaceless platform is missing (e.g. NVIDIA's EGL).

    Args:
        version: oldest (major, minor) core profile accepted.

    Raises:
        GLError: no EGL library, no usable display, or no context of that version.
    """

    def __init__(self, version: tuple[int, int] = settings.GL_VERSION):
        self.version = tuple(version)
        import_gl()
        import OpenGL.platform

        platform = type(OpenGL.platform.PLATFORM).__name__
        if platform != "EGLPlatform":
            raise GLError(f"headless OpenGL needs PyOpenGL's EGL platform but it was loaded as {platform} "
                          "(set PYOPENGL_PLATFORM=egl, or import vrstyle.gl before OpenGL)")
        try:
            from OpenGL import EGL
        except Exception as exc:
            raise GLError(f"no EGL for a headless OpenGL context ({exc}); install libegl1 and libegl-mesa0, "
                          "or run with a display") from None
        self.egl = EGL
        self.display = self._open_display()
        if not EGL.eglBindAPI(EGL.EGL_OPENGL_API):
            raise GLError("this EGL cannot create desktop OpenGL contexts (only OpenGL ES)")
        self.context = self._create_context(self.version)
        with self.building():
            self.on_close(self._destroy_context)
            self.make_current()
            check_version(self.version)
        log.info("headless OpenGL: %s", describe_current())

    def _open_display(self):
        EGL = self.egl
        reason = "no EGL driver answered"
        candidates = []
        extensions = (EGL.eglQueryString(EGL.EGL_NO_DISPLAY, EGL.EGL_EXTENSIONS) or b"").decode()
        if "EGL_MESA_platform_surfaceless" in extensions:
            candidates.append(lambda: EGL.eglGetPlatformDisplay(EGL_PLATFORM_SURFACELESS_MESA, EGL.EGL_DEFAULT_DISPLAY, None))
        candidates.append(lambda: EGL.eglGetDisplay(EGL.EGL_DEFAULT_DISPLAY))
        for get_display in candidates:
            try:
                display = get_display()
                if display and EGL.eglInitialize(display, ctypes.pointer(EGL.EGLint()), ctypes.pointer(EGL.EGLint())):
                    return display
            except EGL.EGLError as exc:
                reason = f"{getattr(exc.err, 'name', exc.err)} from {exc.baseOperation.__name__}"
        raise GLError(f"no EGL display for headless OpenGL ({reason}); install libegl-mesa0 "
                      "(Mesa's surfaceless platform) or a GPU driver with EGL")

    def _create_context(self, version: tuple[int, int]):
        EGL = self.egl
        attributes = (EGL.EGLint * 7)(EGL.EGL_CONTEXT_MAJOR_VERSION, version[0], EGL.EGL_CONTEXT_MINOR_VERSION,
                                      version[1], EGL.EGL_CONTEXT_OPENGL_PROFILE_MASK,
                                      EGL.EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT, EGL.EGL_NONE)
        try:
            context = EGL.eglCreateContext(self.display, EGL.EGLConfig(), EGL.EGL_NO_CONTEXT, attributes)
        except EGL.EGLError:
            context = None
        if not context:
            raise GLError(f"OpenGL {version[0]}.{version[1]} core is needed but the EGL driver cannot create it"
                          f"{self._best_offered()}")
        return context

    def _best_offered(self) -> str:
        """' (it offers 4.5 (Core Profile) Mesa ...)' from a default context, for error messages."""
        EGL = self.egl
        try:
            context = EGL.eglCreateContext(self.display, EGL.EGLConfig(), EGL.EGL_NO_CONTEXT, None)
            EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, context)
            offered = describe_current()
            EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
            EGL.eglDestroyContext(self.display, context)
            return f" (it offers OpenGL {offered})"
        except Exception:
            return ""

    def make_current(self) -> None:
        EGL = self.egl
        if not EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, self.context):
            raise GLError("cannot make the headless OpenGL context current (EGL_KHR_surfaceless_context missing?)")

    def _destroy_context(self) -> None:
        EGL = self.egl
        EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
        EGL.eglDestroyContext(self.display, self.context)


class WindowContext(Resource):
    """A glfw window with an OpenGL core context, current on this thread.

    Args:
        width, height: window size in screen coordinates.
        title: window title.
        version: oldest (major, minor) core profile accepted.
        visible: False gives a hidden window (an offscreen context on a display).
        vsync: swap on the display's refresh.

    Raises:
        GLError: no display, no glfw, or no context of that version.
    """

    def __init__(self, width: int, height: int, title: str = "vrstyle", version: tuple[int, int] = settings.GL_VERSION,
                 visible: bool = True, vsync: bool = True):
        self.version = tuple(version)
        self.window = None
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise GLError("no display to open a window on: DISPLAY is not set (run it on a desktop, "
                          "or under xvfb-run for no screen)")
        try:
            import glfw
        except Exception as exc:
            raise GLError(f"no glfw for windows ({exc}); install vrstyle[gl]") from None
        self.glfw = glfw
        glfw.ERROR_REPORTING = "raise"
        try:
            if not glfw.init():
                raise GLError("glfw could not initialise the display")
        except glfw.GLFWError as exc:
            raise GLError(f"cannot open the display {os.environ.get('DISPLAY', '')}: {_glfw_message(exc)}") from None
        with self.building():
            self.on_close(glfw.terminate)
            self._open_window(width, height, title, visible, vsync)
        log.info("window OpenGL: %s", describe_current())

    def _open_window(self, width: int, height: int, title: str, visible: bool, vsync: bool) -> None:
        glfw = self.glfw
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, self.version[0])
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, self.version[1])
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.VISIBLE, visible)
        if os.environ.get("PYOPENGL_PLATFORM") == "egl":
            glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.EGL_CONTEXT_API)  # the API PyOpenGL talks to
        try:
            self.window = glfw.create_window(width, height, title, None, None)
        except glfw.GLFWError as exc:
            raise GLError(f"cannot create an OpenGL {self.version[0]}.{self.version[1]} core context on display "
                          f"{os.environ.get('DISPLAY', '')}: {_glfw_message(exc)}") from None
        self.on_close(glfw.destroy_window, self.window)
        glfw.make_context_current(self.window)
        glfw.swap_interval(1 if vsync else 0)
        check_version(self.version)

    def resize(self, width: int, height: int, timeout_s: float = 2.0) -> None:
        """Ask for a new window size and wait (up to ``timeout_s``) until the framebuffer has it;
        a window manager may refuse, so the size is not guaranteed."""
        self.glfw.set_window_size(self.window, width, height)
        until = time.monotonic() + timeout_s
        while self.glfw.get_window_size(self.window) != (width, height) and time.monotonic() < until:
            self.glfw.wait_events_timeout(0.01)

    def framebuffer_size(self) -> tuple[int, int]:
        """(width, height) of the window's framebuffer in pixels (differs from the size on HiDPI)."""
        return self.glfw.get_framebuffer_size(self.window)

    def should_close(self) -> bool:
        return bool(self.glfw.window_should_close(self.window))

    def swap(self) -> None:
        self.glfw.swap_buffers(self.window)
        self.glfw.poll_events()



def _glfw_message(exc: Exception) -> str:
    """glfw's error text without the library's "(65543) b'...'" wrapping."""
    text = str(exc).split(") ", 1)[-1].strip()
    return text[2:-1] if text[:2] in ("b'", 'b"') else text
