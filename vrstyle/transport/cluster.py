"""A broker and N style workers as processes on this host, started and stopped together.

Used by tests, ``vrstyle mirror``, ``vrstyle headset`` and ``vrstyle bench`` for a local
default: the processes are the real ``vrstyle broker`` and ``vrstyle worker`` commands on ipc
endpoints in a private temporary folder, so nothing collides with a broker already running.
``vrstyle workers`` uses it for workers only, joining a broker elsewhere (``broker=``), and
keeps them running with :meth:`LocalCluster.supervise`.

>>> cluster = LocalCluster(["candy"], workers=0)
>>> cluster.client_endpoint.startswith("ipc://")
True
>>> cluster.close()
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

import zmq

from vrstyle.errors import EXIT_USER_ERROR
from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource
from vrstyle.transport import protocol as P
from vrstyle.transport.client import TransportClient

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 900.0
"""Workers load torch and their models, and CUDA workers compile and warm up (minutes per
style and tile shape), before READY."""
STOP_TIMEOUT_S = 10.0
"""How long a process gets to leave cleanly after SIGTERM before SIGKILL (a worker gives its
inference thread as long to finish a batch)."""
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
"""A worker that exits is restarted by :meth:`LocalCluster.supervise` after these delays,
doubling each time."""


class LocalCluster(Resource):
    """Starts ``vrstyle broker`` and ``workers`` ``vrstyle worker`` processes.

    Args:
        styles: style names or model files every worker loads.
        workers: number of worker processes.
        devices: device of each worker (default ``cpu`` for all), e.g. ``["cuda:0", "cuda:1"]``.
        heartbeat_s: heartbeat interval of broker and workers alike.
        threads: torch threads per worker (None: torch's default).
        worker_args: more ``vrstyle worker`` arguments (``--credit 4``, ``--warmup 656x656``).
        env: extra environment variables for the processes.
        broker: the worker endpoint of a broker running elsewhere, for the workers to join
            instead of starting one here (``client_endpoint`` is then None).
        logs: write each process's output to a log in the cluster's folder (False: to this
            process's stdout and stderr).

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, styles: Sequence[str], workers: int = 1, *, devices: Sequence[str] | None = None,
                 heartbeat_s: float = P.HEARTBEAT_INTERVAL_S, threads: int | None = None,
                 worker_args: Sequence[str] = (), env: dict[str, str] | None = None, broker: str | None = None,
                 logs: bool = True):
        if workers < 0:
            raise VrstyleError(f"workers must be >= 0, got {workers}")
        if devices is not None and len(devices) != workers:
            raise VrstyleError(f"{len(devices)} devices given for {workers} workers")
        if broker is None and not zmq.has("ipc"):
            raise VrstyleError("this libzmq has no ipc transport")
        self.styles, self.devices = list(styles), list(devices or ["cpu"] * workers)
        self.heartbeat_s, self.threads, self.worker_args = heartbeat_s, threads, list(worker_args)
        self.env, self.logs = {**os.environ, **(env or {})}, logs
        self.folder = Path(tempfile.mkdtemp(prefix="vrstyle-"))
        self._processes: dict[str, subprocess.Popen] = {}
        """Every process started, by name ("broker", "worker0", ...): what :meth:`close` stops."""
        self.on_close(weakref.finalize(self, _stop_all, self.folder, self._processes))
        self.client_endpoint = None if broker else f"ipc://{self.folder}/clients"
        self.worker_endpoint = broker or f"ipc://{self.folder}/workers"

    def __enter__(self) -> "LocalCluster":
        return self.start()

    @property
    def workers(self) -> list[subprocess.Popen | None]:
        """Each worker's process (None: not started, or killed)."""
        return [self._processes.get(f"worker{index}") for index in range(len(self.devices))]

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "LocalCluster":
        """Start the broker (unless it runs elsewhere) and every worker; return once all workers
        announced READY (at once for a broker elsewhere, which only it would know).

        Raises:
            VrstyleError: a process exited or the workers were not ready in time (the last
                line of each failing process's log says why); everything is closed again.
        """
        with self.building():
            if self.client_endpoint is not None:
                self._spawn("broker", ["broker", "--clients", self.client_endpoint, "--workers", self.worker_endpoint,
                                       "--heartbeat", str(self.heartbeat_s)])
            for index in range(len(self.devices)):
                self.start_worker(index, wait=False)
            if self.client_endpoint is not None:
                self.wait_for_workers(len(self.devices), timeout)
        return self

    def start_worker(self, index: int, wait: bool = True, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """(Re)start worker ``index``; with ``wait``, return once the broker has it."""
        args = ["worker", "--broker", self.worker_endpoint, "--device", self.devices[index],
                "--heartbeat", str(self.heartbeat_s)]
        for style in self.styles:
            args += ["--style", style]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        process = self._spawn(f"worker{index}", args + self.worker_args)
        log.info("started worker%d pid %d on %s", index, process.pid, self.devices[index])
        if wait:
            self.wait_for_workers(sum(p is not None and p.poll() is None for p in self.workers), timeout)

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to worker ``index`` (SIGKILL by default) and reap it."""
        process = self._processes.pop(f"worker{index}", None)
        if process is not None:
            process.send_signal(sig)
            process.wait()

    def worker_pid(self, index: int) -> int:
        return self._processes[f"worker{index}"].pid

    def supervise(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Keep every worker running until ``stop`` is set: one that exits (or was killed) is
        restarted after a delay that doubles each time, from RESTART_MIN_S to RESTART_MAX_S.

        Raises:
            VrstyleError: a worker refused its arguments (restarting would not help).
        """
        delays = [RESTART_MIN_S] * len(self.devices)
        due: dict[int, float] = {}  # worker index -> when to restart it
        while not stop.is_set():
            now = time.monotonic()
            for index, process in enumerate(self.workers):
                if index in due:
                    if now >= due[index]:
                        del due[index]
                        self.start_worker(index, wait=False)
                elif process is None or process.poll() is not None:
                    status = "killed" if process is None else f"status {process.returncode}"
                    if process is not None and process.returncode == EXIT_USER_ERROR:
                        raise VrstyleError(f"the worker on {self.devices[index]} refused its arguments "
                                           f"({self._exit_reason(f'worker{index}', process)})")
                    log.warning("worker%d on %s exited (%s); restarting in %.0f s", index, self.devices[index],
                                status, delays[index])
                    due[index] = now + delays[index]
                    delays[index] = min(2 * delays[index], RESTART_MAX_S)
            stop.wait(poll_s)

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

    def log(self, name: str) -> str:
        """What process ``name`` ("broker", "worker0", ...) wrote to its log so far."""
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        verbosity = ["-vv"] if log.isEnabledFor(logging.DEBUG) else ["-v"] if log.isEnabledFor(logging.INFO) else []
        output = open(self.folder / f"{name}.log", "ab") if self.logs else None
        try:
            process = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", *verbosity, *args], env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT if output else None)
        finally:
            if output is not None:
                output.close()
        self._processes[name] = process
        return process

    def _check_alive(self) -> None:
        for name, process in list(self._processes.items()):
            if process.poll() is not None:
                raise VrstyleError(f"{name} exited during startup: {self._exit_reason(name, process)}")

    def _exit_reason(self, name: str, process: subprocess.Popen) -> str:
        """The last line of the process's log, or its exit status where there is none."""
        lines = self.log(name).strip().splitlines()
        return lines[-1] if lines else f"exit status {process.returncode}"


def _stop_all(folder: Path, processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every process (SIGKILL after a grace period) and remove the folder: what
    :meth:`LocalCluster.close` does, also run at interpreter exit for clusters nobody closed."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    until = time.monotonic() + STOP_TIMEOUT_S
    for process in processes.values():
        try:
            process.wait(timeout=max(until - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    processes.clear()
    shutil.rmtree(folder, ignore_errors=True)
