"""The OpenXR runtime: its OpenGL binding, an instance and the headset, each failure in one line.

OpenGL reaches a runtime through ``XR_KHR_opengl_enable`` with the context of a window system:
EGL where the runtime also offers ``XR_MNDX_egl_enable`` (Monado; needs no display server),
GLX on Linux otherwise (SteamVR; needs an X display), WGL on Windows (SteamVR, Meta Link).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

import xr

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource

log = logging.getLogger(__name__)

OPENGL_EXTENSION = xr.KHR_OPENGL_ENABLE_EXTENSION_NAME
EGL_EXTENSION = xr.MNDX_EGL_ENABLE_EXTENSION_NAME
BINDINGS = ("auto", "egl", "glx", "wgl")
"""``--graphics`` choices; ``auto`` takes EGL where the runtime offers it, else the window system's."""
RUNTIME_HINT = "start SteamVR, Monado (monado-service) or Meta Link and make it the active OpenXR runtime"


LOST = (xr.SessionLostError, xr.InstanceLostError)
"""What any OpenXR call may raise when the runtime went away (service stopped, headset
unplugged): the session is over; reconnect or leave."""


@contextlib.contextmanager
def runtime_output() -> Iterator[None]:
    """Route what the loader and the runtime print to stderr (fd 2) while starting into the log (``-v``).

    Runtimes print their own banners when they cannot start (Monado's "Please make sure that the
    service process is running"); vrstyle reports the problem in one line of its own instead.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.info("OpenXR runtime output:\n%s", text)


def runtime_extensions() -> list[str]:
    """Instance extensions of the active runtime; :class:`VrstyleError` when there is none."""
    try:
        with runtime_output():
            properties = xr.enumerate_instance_extension_properties()
    except xr.RuntimeUnavailableError:
        raise VrstyleError(no_runtime_message()) from None
    return [_text(p.extension_name) for p in properties]


def no_runtime_message() -> str:
    manifest = os.environ.get("XR_RUNTIME_JSON")
    if manifest:
        return f"no OpenXR runtime: XR_RUNTIME_JSON={manifest} does not name a runtime manifest that loads"
    return f"no OpenXR runtime found: {RUNTIME_HINT}"


def choose_binding(extensions: list[str], requested: str = "auto", platform: str = sys.platform) -> str:
    """The OpenGL binding to use with a runtime offering ``extensions``.

    Args:
        extensions: the runtime's instance extensions.
        requested: one of :data:`BINDINGS`.
        platform: ``sys.platform``.

    Returns:
        ``"egl"``, ``"glx"`` or ``"wgl"``.

    Raises:
        VrstyleError: the runtime has no OpenGL support, or not the kind requested.

    >>> choose_binding(["XR_KHR_opengl_enable", "XR_MNDX_egl_enable"], platform="linux")
    'egl'
    >>> choose_binding(["XR_KHR_opengl_enable"], platform="linux")
    'glx'
    """
    if requested not in BINDINGS:
        raise VrstyleError(f"unknown graphics binding {requested!r}; use one of {', '.join(BINDINGS)}")
    if OPENGL_EXTENSION not in extensions:
        others = sorted(e for e in extensions if any(api in e for api in ("vulkan_enable", "D3D", "opengl_es")))
        offered = f"; it offers {', '.join(others)}" if others else ""
        raise VrstyleError(f"the OpenXR runtime does not support OpenGL ({OPENGL_EXTENSION} missing{offered})")
    native = "wgl" if platform.startswith("win") else "glx"
    egl = EGL_EXTENSION in extensions and not platform.startswith("win")
    if requested == "auto":
        return "egl" if egl else native
    if requested == "egl" and not egl:
        raise VrstyleError(f"the OpenXR runtime offers no EGL binding ({EGL_EXTENSION} missing); "
                           f"use --graphics {native}")
    if requested != "egl" and requested != native:
        raise VrstyleError(f"--graphics {requested} does not exist on this platform; use {native}")
    return requested


def use_gl_platform(binding: str) -> None:
    """Point PyOpenGL at the window system of the chosen binding, before the context is made.

    PyOpenGL asks its platform for the current context to keep data per context (e.g. in
    ``glVertexAttribPointer``), so the platform must match the context's kind. It is fixed when
    PyOpenGL is first imported (pyopenxr imports it, and then overrides it with GLX), so it is
    installed here again. Without a display server, Mesa's surfaceless EGL platform is used.
    """
    import OpenGL.platform as gl_platform

    if binding == "egl":
        from OpenGL.platform.egl import EGLPlatform as Platform

        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    elif binding == "glx":
        from OpenGL.platform.glx import GLXPlatform as Platform
    else:
        return
    os.environ["PYOPENGL_PLATFORM"] = binding
    platform = Platform()
    gl_platform.PLATFORM = platform
    platform.install(vars(gl_platform))


@dataclass(eq=False)
class Runtime(Resource):
    """An OpenXR instance and its head-mounted display."""

    instance: xr.Instance
    system_id: xr.SystemId
    runtime_name: str
    system_name: str
    extensions: list[str]

    def _free(self) -> None:
        try:
            xr.destroy_instance(self.instance)
        except xr.XrException as exc:  # a lost runtime may refuse even this
            log.debug("destroying the instance: %s", exc)


def open_runtime(binding: str, extensions: list[str], app_name: str = settings.XR_APP_NAME,
                 optional: tuple[str, ...] = ()) -> Runtime:
    """Create an instance with the OpenGL binding's extensions (and those of ``optional`` the
    runtime offers) and find the headset.

    Raises:
        VrstyleError: the runtime cannot start an instance or sees no headset.
    """
    wanted = [OPENGL_EXTENSION] + ([EGL_EXTENSION] if binding == "egl" else [])
    enabled = wanted + [e for e in (xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME, *optional) if e in extensions]
    info = xr.InstanceCreateInfo(
        application_info=xr.ApplicationInfo(application_name=app_name, engine_name="vrstyle"),
        enabled_extension_names=enabled)
    try:
        with runtime_output():
            instance = xr.create_instance(info)
    except xr.RuntimeUnavailableError:
        raise VrstyleError(no_runtime_message()) from None
    except xr.RuntimeFailureError:
        raise VrstyleError("the OpenXR runtime could not start (is its service running? "
                           "e.g. monado-service, SteamVR or the Meta Link app)") from None
    except xr.XrException as exc:
        raise VrstyleError(f"the OpenXR runtime refused an instance: {exc}") from None
    runtime_name = _text(xr.get_instance_properties(instance).runtime_name)
    try:
        with runtime_output():
            system_id = xr.get_system(instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
    except xr.FormFactorUnavailableError:
        xr.destroy_instance(instance)
        raise VrstyleError(f"no headset: the OpenXR runtime ({runtime_name}) sees no head-mounted display; "
                           "connect it and switch it on") from None
    except xr.XrException as exc:
        xr.destroy_instance(instance)
        raise VrstyleError(f"the OpenXR runtime ({runtime_name}) has no head-mounted display: {exc}") from None
    system_name = _text(xr.get_system_properties(instance, system_id).system_name)
    log.info("OpenXR runtime %s, headset %s, %s binding", runtime_name, system_name, binding)
    return Runtime(instance, system_id, runtime_name, system_name, enabled)


def opengl_requirements(runtime: Runtime) -> tuple[xr.Version, xr.Version]:
    """(min, max) OpenGL versions; the call itself is required before creating a session."""
    function = ctypes.cast(xr.get_instance_proc_addr(runtime.instance, "xrGetOpenGLGraphicsRequirementsKHR"),
                           xr.PFN_xrGetOpenGLGraphicsRequirementsKHR)
    requirements = xr.GraphicsRequirementsOpenGLKHR()
    result = xr.check_result(xr.Result(function(runtime.instance, runtime.system_id, ctypes.byref(requirements))))
    if result.is_exception():
        raise result
    return requirements.min_api_version_supported, requirements.max_api_version_supported


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
