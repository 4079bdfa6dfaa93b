"""OpenGL contexts an OpenXR runtime accepts, and the session binding for each.

EGL contexts come from pyopenxr's surfaceless provider (no display needed); GLX and WGL
contexts from a glfw window, hidden unless it doubles as the mirror window. The context
outlives OpenXR sessions, so a lost runtime can be reconnected without reloading GL resources.
"""

from __future__ import annotations

import contextlib
import logging

from xr.utils import GraphicsContextProvider

from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

GL_VERSION = (4, 5)
"""Requested context version; 3.3 core is the fallback (the compositor's shaders need 3.3)."""
GL_FALLBACK_VERSION = (3, 3)


class GlfwContext(GraphicsContextProvider):
    """The GL context of a glfw window (GLX on X11 and XWayland, WGL on Windows).

    Args:
        visible: show the window (the mirror); otherwise it only carries the context.
        size: window size in screen pixels.
        title: window title.

    Raises:
        VrstyleError: no display, or no OpenGL 3.3 context on it.
    """

    def __init__(self, visible: bool = False, size: tuple[int, int] = (64, 64), title: str = "vrstyle"):
        import glfw

        self._glfw = glfw
        with _glfw_errors("glfw could not start (is DISPLAY set?)"):
            glfw.init()
        glfw.window_hint(glfw.VISIBLE, glfw.TRUE if visible else glfw.FALSE)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, glfw.TRUE)
        self.window = None
        for major, minor in (GL_VERSION, GL_FALLBACK_VERSION):
            glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, major)
            glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, minor)
            with contextlib.suppress(VrstyleError), _glfw_errors("no OpenGL window"):
                self.window = glfw.create_window(size[0], size[1], title, None, None)
            if self.window:
                break
        if not self.window:
            glfw.terminate()
            raise VrstyleError(f"no OpenGL {GL_FALLBACK_VERSION[0]}.{GL_FALLBACK_VERSION[1]} core context "
                               "on this display")
        self.make_current()
        glfw.swap_interval(0)  # the headset paces the loop, never the mirror's vsync

    def make_current(self) -> None:
        self._glfw.make_context_current(self.window)

    def done_current(self) -> None:
        self._glfw.make_context_current(None)

    def destroy(self) -> None:
        if self.window is not None:
            self._glfw.destroy_window(self.window)
            self._glfw.terminate()
            self.window = None


def create_context(binding: str, mirror: bool = False) -> GraphicsContextProvider:
    """A current GL context for ``binding`` (``egl``, ``glx`` or ``wgl``).

    Raises:
        VrstyleError: the context cannot be made (no EGL device, no display, GL too old).
    """
    if binding == "egl":
        if mirror:
            raise VrstyleError("the mirror window needs a window-system context: use --graphics glx")
        from xr.utils.gl.egl_util import EGLOffscreenContextProvider

        try:
            context = EGLOffscreenContextProvider()
            context.make_current()
        except Exception as exc:  # PyOpenGL raises EGLError, RuntimeError or GLError here
            raise VrstyleError(f"EGL could not make an OpenGL context ({exc}); without a display set "
                               "EGL_PLATFORM=surfaceless") from None
    else:
        context = GlfwContext(visible=mirror, size=(960, 540) if mirror else (64, 64))
    from OpenGL import GL

    version = GL.glGetString(GL.GL_VERSION).decode()
    log.info("OpenGL %s on %s", version, GL.glGetString(GL.GL_RENDERER).decode())
    major, minor = (int(v) for v in version.split()[0].split(".")[:2])
    if (major, minor) < GL_FALLBACK_VERSION:
        context.destroy()
        raise VrstyleError(f"OpenGL {major}.{minor} is too old: vrstyle needs {GL_FALLBACK_VERSION[0]}."
                           f"{GL_FALLBACK_VERSION[1]}")
    return context


def session_binding(binding: str, context: GraphicsContextProvider):
    """The pyopenxr graphics binding (``.pointer`` goes into ``SessionCreateInfo.next``)."""
    from xr.utils.gl import GLXGraphicsBinding, WGLGraphicsBinding

    if binding == "egl":
        from xr.utils.gl.egl_util import EGLGraphicsBinding

        return EGLGraphicsBinding(context)
    return {"glx": GLXGraphicsBinding, "wgl": WGLGraphicsBinding}[binding](context)


@contextlib.contextmanager
def _glfw_errors(what: str):
    """Turn glfw's error callback into one :class:`VrstyleError` line for the duration."""
    import glfw

    before, glfw.ERROR_REPORTING = glfw.ERROR_REPORTING, "raise"
    try:
        yield
    except glfw.GLFWError as exc:
        raise VrstyleError(f"{what}: {exc}") from None
    finally:
        glfw.ERROR_REPORTING = before

