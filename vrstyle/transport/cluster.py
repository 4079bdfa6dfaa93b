"""A broker and N style workers as processes on this host, started and stopped together.

Used by tests, ``vrstyle mirror`` and ``vrstyle bench`` for a local default: the processes
are the real ``vrstyle broker`` and ``vrstyle worker`` commands on ipc endpoints in a private
temporary folder, so nothing collides with a broker already running.

>>> cluster = LocalCluster(["candy"], workers=0)
>>> cluster.client_endpoint.startswith("ipc://")
True
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

import zmq

from vrstyle.errors import VrstyleError
from vrstyle.transport import protocol as P
from vrstyle.transport.client import TransportClient

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 900.0
"""Workers load torch and their models, and CUDA workers compile and warm up (minutes per
style and tile shape), before READY."""
STOP_TIMEOUT_S = 5.0
"""How long a process gets to leave cleanly after SIGTERM before SIGKILL."""


class LocalCluster:
    """Starts ``vrstyle broker`` and ``workers`` ``vrstyle worker`` processes.

    Args:
        styles: style names or model files every worker loads.
        workers: number of worker processes.
        devices: device of each worker (default ``cpu`` for all), e.g. ``["cuda:0", "cuda:1"]``.
        heartbeat_s: heartbeat interval of broker and workers alike.
        threads: torch threads per worker (None: torch's default).
        worker_args: more ``vrstyle worker`` arguments (``--credit 4``, ``--warmup 656x656``).
        env: extra environment variables for the processes.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, styles: Sequence[str], workers: int = 1, *, devices: Sequence[str] | None = None,
                 heartbeat_s: float = P.HEARTBEAT_INTERVAL_S, threads: int | None = None,
                 worker_args: Sequence[str] = (), env: dict[str, str] | None = None):
        if workers < 0:
            raise VrstyleError(f"workers must be >= 0, got {workers}")
        if devices is not None and len(devices) != workers:
            raise VrstyleError(f"{len(devices)} devices given for {workers} workers")
        if not zmq.has("ipc"):
            raise VrstyleError("this libzmq has no ipc transport")
        self.styles, self.devices = list(styles), list(devices or ["cpu"] * workers)
        self.heartbeat_s, self.threads, self.worker_args = heartbeat_s, threads, list(worker_args)
        self.env = {**os.environ, **(env or {})}
        self.folder = Path(tempfile.mkdtemp(prefix="vrstyle-"))
        self.client_endpoint = f"ipc://{self.folder}/clients"
        self.worker_endpoint = f"ipc://{self.folder}/workers"
        self.broker: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self._finalizer = weakref.finalize(self, _stop_all, self.folder, [])

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "LocalCluster":
        """Start the broker and every worker; return once all workers announced READY.

        Raises:
            VrstyleError: a process exited or the workers were not ready in time (the last
                line of each failing process's log says why); everything is stopped again.
        """
        try:
            self.broker = self._spawn("broker", ["broker", "--clients", self.client_endpoint, "--workers",
                                                 self.worker_endpoint, "--heartbeat", str(self.heartbeat_s)])
            for index in range(len(self.workers)):
                self.start_worker(index, wait=False)
            self.wait_for_workers(len(self.workers), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, index: int, wait: bool = True, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """(Re)start worker ``index``; with ``wait``, return once the broker has it."""
        args = ["worker", "--broker", self.worker_endpoint, "--device", self.devices[index],
                "--heartbeat", str(self.heartbeat_s)]
        for style in self.styles:
            args += ["--style", style]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        self.workers[index] = self._spawn(f"worker{index}", args + self.worker_args)
        if wait:
            self.wait_for_workers(sum(p is not None and p.poll() is None for p in self.workers), timeout)

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to worker ``index`` (SIGKILL by default) and reap it."""
        process = self.workers[index]
        if process is not None:
            process.send_signal(sig)
            process.wait()
            self.workers[index] = None

    def worker_pid(self, index: int) -> int:
        return self.workers[index].pid

    def client(self, **options) -> TransportClient:
        """A client of this cluster's broker (options as for :class:`TransportClient`)."""
        options.setdefault("heartbeat_s", self.heartbeat_s)
        return TransportClient(self.client_endpoint, **options)

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        with self.client() as client:
            return client.status(timeout)

    def wait_for_workers(self, count: int, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until ``count`` of this cluster's live worker processes are registered."""
        until = time.monotonic() + timeout
        with self.client() as client:
            while True:
                self._check_alive()
                pids = {p.pid for p in self.workers if p is not None and p.poll() is None}
                ready = [w for w in client.status()["workers"] if w["pid"] in pids]
                if len(ready) >= count:
                    return
                if time.monotonic() > until:
                    raise VrstyleError(f"{len(ready)} of {count} workers ready after {timeout:g} s; "
                                       f"see the logs in {self.folder}")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every process (SIGKILL after a grace period) and remove the folder."""
        processes = [p for p in self.workers if p is not None] + ([self.broker] if self.broker else [])
        _terminate(processes)
        self.workers = [None] * len(self.workers)
        self.broker = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self, name: str) -> str:
        """What process ``name`` ("broker", "worker0", ...) wrote to stderr so far."""
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        verbosity = ["-v"] if log.isEnabledFor(logging.INFO) else []
        with open(self.folder / f"{name}.log", "ab") as handle:
            process = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", *verbosity, *args], env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
        self._finalizer.detach()
        everything = [p for p in self.workers if p is not None] + [p for p in (self.broker, process) if p]
        self._finalizer = weakref.finalize(self, _stop_all, self.folder, everything)
        return process

    def _check_alive(self) -> None:
        named = [("broker", self.broker)] + [(f"worker{i}", p) for i, p in enumerate(self.workers)]
        for name, process in named:
            if process is not None and process.poll() is not None:
                lines = self.log(name).strip().splitlines()
                reason = lines[-1] if lines else f"exit status {process.returncode}"
                raise VrstyleError(f"{name} exited during startup: {reason}")


def _terminate(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    until = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(until - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_all(folder: Path, processes: list[subprocess.Popen]) -> None:
    """Last resort at interpreter exit, for clusters nobody stopped."""
    _terminate(processes)
    shutil.rmtree(folder, ignore_errors=True)
