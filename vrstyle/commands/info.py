"""Say what this machine can do for vrstyle: versions, CPU kernels, GPUs, OpenGL, OpenXR, styles.

Example: ``vrstyle info`` (aligned lines) or ``vrstyle info --json``. Every probe is
independent and cheap (no model runs); one that finds something missing says what installs or
enables it, and the command still succeeds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Callable

PACKAGES = ("vrstyle", "torch", "numpy", "numba", "pyzmq", "PyOpenGL", "pyopenxr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object instead of aligned lines")


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    missing = [name for name in ("torch", "numba") if not found[name]]
    hint = f"pip install 'vrstyle[torch]' for {', '.join(missing)} (networks, workers)" if missing else None
    return {"versions": found, "hint": hint}


def cpu() -> dict:
    from vrstyle.live import cpu_model

    report = {"model": cpu_model(), "cores": os.cpu_count()}
    try:
        from vrstyle.kernels.bconv import kernel_path
    except ImportError as exc:
        return {**report, "binary_kernels": None, "hint": f"binary kernels need numba ({exc.name} missing)"}
    path = kernel_path()
    hint = None if path == "avx512-vpopcntdq" else f"binary kernels run on {path} here (AVX-512 VPOPCNTDQ is fastest)"
    return {**report, "binary_kernels": path, "hint": hint}


def gpus() -> dict:
    try:
        import torch
    except ImportError:
        return {"devices": [], "hint": "no torch: GPUs are not looked for"}
    if not torch.cuda.is_available():
        return {"devices": [], "hint": "no CUDA GPU visible: workers run on the CPU (the mirror picks an eye size it keeps live)"}
    devices = [{"name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
               for i in range(torch.cuda.device_count())]
    return {"devices": devices, "hint": None}


def opengl() -> dict:
    """A headless EGL context (the compositor's and the tests' way in), created and closed."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        from vrstyle.gl.context import GLError, HeadlessContext, describe_current
    except ImportError as exc:
        return {"headless": None, "hint": f"pip install 'vrstyle[gl]' for OpenGL ({exc.name} missing)"}
    try:
        context = HeadlessContext()
    except GLError as exc:
        return {"headless": None, "hint": str(exc)}
    try:
        return {"headless": describe_current(), "display": os.environ.get("DISPLAY"),
                "hint": None if os.environ.get("DISPLAY") else "no DISPLAY: mirror windows need one (or xvfb-run)"}
    finally:
        context.close()


def openxr() -> dict:
    try:
        import xr  # noqa: F401

        from vrstyle.errors import VrstyleError
        from vrstyle.xr.runtime import OPENGL_EXTENSION, runtime_extensions
    except ImportError as exc:
        return {"runtime": None, "hint": f"pip install 'vrstyle[xr]' for the headset ({exc.name} missing)"}
    try:
        extensions = runtime_extensions()
    except VrstyleError as exc:
        return {"runtime": None, "hint": str(exc)}
    return {"runtime": runtime_name(), "manifest": os.environ.get("XR_RUNTIME_JSON"),
            "opengl": OPENGL_EXTENSION in extensions,
            "hint": None if OPENGL_EXTENSION in extensions else "the runtime offers no OpenGL binding"}


def runtime_name() -> str | None:
    """The active runtime's name and version, from an instance made and destroyed at once."""
    import xr

    from vrstyle.xr.runtime import runtime_output

    try:
        with runtime_output():
            instance = xr.create_instance(xr.InstanceCreateInfo(
                application_info=xr.ApplicationInfo(application_name="vrstyle info", engine_name="vrstyle")))
    except xr.XrException as exc:
        return f"present, but it does not start ({type(exc).__name__}: is its service running?)"
    try:
        properties = xr.get_instance_properties(instance)
        version = properties.runtime_version
        name = properties.runtime_name
        name = name.decode() if isinstance(name, bytes) else str(name)
        return f"{name} {xr.Version(version) if isinstance(version, int) else version}"
    finally:
        xr.destroy_instance(instance)


def styles() -> dict:
    try:
        from vrstyle.models import available_models
        from vrstyle.models.registry import SHIPPED_DIR, shared_data_dir
    except ImportError as exc:
        return {"models": {}, "hint": f"pip install 'vrstyle[torch]' to run styles ({exc.name} missing)"}
    models = {name: ("shipped" if spec.path.parent == SHIPPED_DIR else str(spec.path))
              for name, spec in available_models().items()}
    data = shared_data_dir()
    return {"models": models, "data": str(data) if data else None,
            "hint": None if data else "no shared data folder: teachers (STYLE/teacher) need VRSTYLE_DATA"}


PROBES: dict[str, Callable[[], dict]] = {"vrstyle": versions, "cpu": cpu, "gpu": gpus, "opengl": opengl,
                                         "openxr": openxr, "styles": styles}
"""Section name -> probe; each returns a dict with a ``hint`` (None when nothing is missing)."""


def summary(name: str, report: dict) -> str:
    if name == "vrstyle":
        return "  ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    if name == "cpu":
        return f"{report['model']}, {report['cores']} cores, binary kernels: {report['binary_kernels'] or 'none'}"
    if name == "gpu":
        return ", ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in report["devices"]) or "none"
    if name == "opengl":
        return f"headless EGL: {report['headless']}" if report["headless"] else "no headless context"
    if name == "openxr":
        return report["runtime"] or "no runtime"
    if name == "styles":
        shipped = sorted(m for m, where in report["models"].items() if where == "shipped")
        others = sorted(m for m, where in report["models"].items() if where != "shipped")
        return (f"shipped: {', '.join(shipped) or 'none'}; from the data folder: {', '.join(others) or 'none'}")
    return str(report)


def run(args: argparse.Namespace) -> int:
    reports = {}
    for name, probe in PROBES.items():
        try:
            reports[name] = probe()
        except Exception as exc:  # a probe must never take the others down with it
            reports[name] = {"hint": f"probe failed: {type(exc).__name__}: {exc}"}
    if args.json:
        print(json.dumps(reports, indent=2, sort_keys=True))
        return 0
    width = max(map(len, PROBES))
    for name, report in reports.items():
        line = summary(name, report) if "hint" in report and len(report) > 1 else ""
        print(f"{name:<{width}}  {line}".rstrip())
        if report.get("hint"):
            print(f"{'':<{width}}  -> {report['hint']}")
    sys.stdout.flush()
    return 0
