"""Where the headset tests run Monado and the OpenXR client: natively, or in a chroot.

On a distribution that ships Monado (Debian trixie, Ubuntu 24.04+: ``monado-service``) both
run natively with this checkout's Python. Elsewhere (e.g. Debian bookworm: Monado 25 needs a
newer glibc, and its client library is loaded into the client process) both run inside a
trixie chroot built by ``.ci/xrroot.sh`` with the tools in ../shared/xr, with this checkout
bind-mounted at /src. Style workers always run on the host (torch) and the client reaches
them over tcp loopback: the chroot shares the host's network. ``VRSTYLE_XR=native|chroot``
picks one explicitly.

Everything started here is stopped by PID, and every mount is undone, on every way out
(fixture finalizers, and ``atexit`` for an interrupted run).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
XRROOT = Path(os.environ.get("XRROOT", "/tmp/xrroot"))
TOOLS = REPO.parent / "shared" / "xr"
PYTHON = "/opt/xrvenv/bin/python"
SOURCE = "/src"
CLIENT_IMPORTS = "import xr, OpenGL, numpy, zmq, tqdm, PIL, glfw"
"""What the headset client imports inside the chroot (vrstyle itself comes from /src)."""
SERVICE_START_S = 45.0
"""How long the service may take to open its socket: seconds when the machine is idle, more on
two cores busy with a training run and the suite's own workers."""
BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def native_unavailable() -> str | None:
    """Why Monado cannot run natively here, or None."""
    if shutil.which("monado-service") is None:
        return "monado-service is not installed here"
    try:
        import xr  # noqa: F401
    except ImportError:
        return "pyopenxr is not installed (vrstyle[xr])"
    return None


def unavailable() -> str | None:
    """Why the chroot cannot be used here, or None."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root (chroot and mounts); CI runs these tests as root"
    if not (TOOLS / "mount_chroot.sh").is_file():
        return f"needs the shared xr tools ({TOOLS}), absent here"
    if not (XRROOT / "usr/bin/monado-service").is_file() or not (XRROOT / PYTHON.lstrip("/")).exists():
        return f"no Monado chroot at {XRROOT}: build it with `sudo .ci/xrroot.sh`"
    return None


class Native:
    """Monado and the client on this machine, with this checkout's Python."""

    python = sys.executable
    source = str(REPO)
    """Where this checkout is, as the client sees it."""

    def __init__(self):
        self.processes: list[subprocess.Popen] = []

    def __enter__(self):
        atexit.register(self.close)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def missing_client_modules(self) -> str | None:
        return None

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        variables = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                     "LANG": "C.UTF-8", "PYTHONPATH": str(REPO), **(env or {})}
        return ["env", "-i", *(f"{k}={v}" for k, v in variables.items()), *argv]

    def popen(self, argv: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(self.command(argv, env), stdin=subprocess.DEVNULL, **kwargs)
        self.processes.append(process)
        return process

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        process = self.popen(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            stop(process)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def host_path(self, inside: str) -> Path:
        return Path(inside)

    def xvfb(self) -> str | None:
        """Start an X server (Xvfb, on a display number it picks) here; its DISPLAY, or None."""
        try:
            server = self.popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            return None
        number = server.stdout.readline().strip()
        return f":{number}" if number else None

    def temp_dir(self, prefix: str) -> str:
        return tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: AF_UNIX socket paths are short

    def close(self) -> None:
        for process in self.processes:
            stop(process)
        self.processes.clear()


class Chroot(Native):
    """The mounted chroot with this checkout at /src; processes inside it; cleanup of both."""

    python = PYTHON
    source = SOURCE

    def __init__(self, root: Path = XRROOT):
        super().__init__()
        self.root = root
        self.mounted_src = False
        self._lock = None

    def __enter__(self) -> "Chroot":
        atexit.register(self.close)
        self._lock = open(self.root / "tmp" / ".vrstyle-tests.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one test session uses the chroot at a time
        try:
            self._tool("mount_chroot.sh")
            (self.root / SOURCE.lstrip("/")).mkdir(exist_ok=True)
            subprocess.run(["mount", "--bind", str(REPO), str(self.root / SOURCE.lstrip("/"))], check=True)
            self.mounted_src = True
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def missing_client_modules(self) -> str | None:
        """The import error of the client's dependencies inside the chroot, or None."""
        done = self.run([PYTHON, "-c", CLIENT_IMPORTS], timeout=60)
        return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        """``argv`` run inside the chroot with a clean environment plus ``env`` (chroot and env
        exec it, so the PID of the process started is its own)."""
        variables = {**BASE_ENV, "PYTHONPATH": SOURCE, **(env or {})}
        return ["chroot", str(self.root), "env", "-i", *(f"{k}={v}" for k, v in variables.items()), *argv]

    def host_path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def temp_dir(self, prefix: str) -> str:
        """A fresh short directory under the chroot's /tmp; returns its path inside."""
        inside = f"/tmp/{prefix}{secrets.token_hex(3)}"
        self.host_path(inside).mkdir(mode=0o700)
        return inside

    def close(self) -> None:
        super().close()
        if self.mounted_src:
            subprocess.run(["umount", str(self.root / SOURCE.lstrip("/"))], check=False)
            self.mounted_src = False
        if self._lock is not None:
            self._tool("umount_chroot.sh")
            self._lock.close()
            self._lock = None

    def _tool(self, name: str) -> None:
        subprocess.run(["sh", str(TOOLS / name)], check=True, env={**os.environ, "XRROOT": str(self.root)},
                       stdout=subprocess.DEVNULL)


def open_place() -> tuple[Native | None, str]:
    """The place to run Monado and the client (not yet entered), or None and why there is none."""
    choice = os.environ.get("VRSTYLE_XR", "")
    native, chroot = native_unavailable(), unavailable()
    if choice == "native" or (not choice and native is None):
        return (Native(), "") if native is None else (None, native)
    if chroot is None:
        return Chroot(), ""
    return None, chroot if choice == "chroot" else f"{native}, and {chroot}"


class Monado:
    """``monado-service`` with the simulated headset and the null compositor.

    Service and clients share a short ``XDG_RUNTIME_DIR`` (the IPC socket lives there).
    """

    def __init__(self, chroot: Native):
        self.chroot = chroot
        self.xdg = chroot.temp_dir("vx")
        self.log_path = chroot.host_path(self.xdg) / "service.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Monado":
        socket = self.chroot.host_path(self.xdg) / "monado_comp_ipc"
        socket.unlink(missing_ok=True)
        with open(self.log_path, "a") as log:
            self.process = self.chroot.popen(["monado-service"], env={
                "XDG_RUNTIME_DIR": self.xdg, "SIMULATED_ENABLE": "1", "XRT_COMPOSITOR_NULL": "1",
                "XRT_NO_STDIN": "1", "XRT_LOG": "warning"}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVICE_START_S
        while not socket.exists():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with status {code}" if code is not None else f"no socket after {SERVICE_START_S:g} s"
                raise RuntimeError(f"monado-service did not start ({why}): {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client_env(self) -> dict[str, str]:
        """What an OpenXR client inside the chroot needs to find this service, headless."""
        return {"XDG_RUNTIME_DIR": self.xdg, "EGL_PLATFORM": "surfaceless"}

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.chroot.host_path(self.xdg), ignore_errors=True)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate one process we started, then kill it if it does not leave in ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
