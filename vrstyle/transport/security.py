"""CurveZMQ for brokers reachable beyond loopback: key pairs, ZAP authentication, socket setup.

A key directory made by ``vrstyle keys DIR`` holds::

    broker.key  broker.key_secret      the broker's pair (its public key goes to every peer)
    client.key  client.key_secret      a client's pair (more with ``--name``)
    worker.key  worker.key_secret      a worker's pair
    authorized/*.key                   public keys the broker accepts

Secret files are written readable by their owner only (0600), and refused, as ssh refuses a
private key, when group or others can read them.

The broker is the CURVE server on both its sockets and runs pyzmq's ZAP handler
(:class:`zmq.auth.thread.ThreadAuthenticator`), which refuses every client or worker whose
public key is not in ``authorized/``. A peer needs its own secret file and ``broker.key``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

BROKER = "broker"
DEFAULT_PEERS = ("client", "worker")
AUTHORIZED = "authorized"
SECRET_SUFFIX = ".key_secret"
PUBLIC_SUFFIX = ".key"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class CurveKeys:
    """One side's CURVE configuration: its own pair, and the broker's public key (peers only)."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    authorized: Path | None = None

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE server (broker) or client (peer) with these keys."""
        socket.curve_publickey, socket.curve_secretkey = self.public, self.secret
        if self.server_public is None:
            socket.curve_server = True
        else:
            socket.curve_serverkey = self.server_public


def generate_keys(directory: str | Path, names: tuple[str, ...] = ()) -> list[Path]:
    """Create the broker's pair (once) and a pair per peer name, authorising each peer.

    Existing pairs are kept, so adding a peer later does not invalidate the others.

    Returns:
        The files written.

    Raises:
        VrstyleError: the directory cannot be written, or a name is not a plain word.
    """
    directory = Path(directory)
    written: list[Path] = []
    for name in (BROKER, *(names or DEFAULT_PEERS)):
        if not name.replace("-", "").replace("_", "").isalnum():
            raise VrstyleError(f"key name {name!r} must be letters, digits, '-' or '_'")
    try:
        (directory / AUTHORIZED).mkdir(parents=True, exist_ok=True)
        for name in (BROKER, *(names or DEFAULT_PEERS)):
            public = directory / f"{name}{PUBLIC_SUFFIX}"
            if not public.exists():
                zmq.auth.create_certificates(directory, name)
                secret = directory / f"{name}{SECRET_SUFFIX}"
                os.chmod(secret, 0o600)
                written += [public, secret]
            if name != BROKER:
                shutil.copy(public, directory / AUTHORIZED / public.name)
    except OSError as exc:
        raise VrstyleError(f"cannot write keys to {directory}: {exc.strerror or exc}") from None
    return written


def server_keys(directory: str | Path) -> CurveKeys:
    """The broker's keys and the folder of authorised public keys."""
    directory = Path(directory)
    public, secret = _load(directory / f"{BROKER}{SECRET_SUFFIX}", need_secret=True)
    authorized = directory / AUTHORIZED
    if not authorized.is_dir() or not any(authorized.glob(f"*{PUBLIC_SUFFIX}")):
        raise VrstyleError(f"no authorised public keys in {authorized} (run: vrstyle keys {directory})")
    return CurveKeys(public, secret, authorized=authorized)


def peer_keys(directory: str | Path, name: str) -> CurveKeys:
    """A client's or worker's keys: ``NAME.key_secret`` and the broker's ``broker.key``."""
    directory = Path(directory)
    public, secret = _load(directory / f"{name}{SECRET_SUFFIX}", need_secret=True)
    server_public, _ = _load(directory / f"{BROKER}{PUBLIC_SUFFIX}", need_secret=False)
    return CurveKeys(public, secret, server_public)


def start_authenticator(context: zmq.Context, keys: CurveKeys) -> ThreadAuthenticator:
    """ZAP handler accepting only the public keys in ``keys.authorized``; stop it when done."""
    auth = ThreadAuthenticator(context, log=logging.getLogger("vrstyle.transport.zap"))
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized))
    return auth


HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
"""Monitor events of a refused connection: both ends watch for them to say why."""


def handshake_failure(event: dict, curve: bool, side: str) -> str | None:
    """Why a connection was refused, as one end sees it (``side``: "client" for the end that
    connects, "broker" for the one that binds), from a monitor ``event``; None if not a refusal.

    >>> mismatch = {"event": zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, "value": zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH}
    >>> handshake_failure(mismatch, curve=False, side="client")
    'uses CurveZMQ keys and this end none: pass --curve DIR (keys from `vrstyle keys DIR`)'
    >>> handshake_failure(mismatch, curve=True, side="broker")
    'it has no CurveZMQ keys, which this broker requires: give it --curve DIR'
    """
    kind = event["event"]
    if not kind & HANDSHAKE_FAILURES:
        return None
    if side == "client" and not curve:  # a plain handshake fails only against a CURVE broker
        return "uses CurveZMQ keys and this end none: pass --curve DIR (keys from `vrstyle keys DIR`)"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return ("refused this end's CURVE key: it is not among the broker's authorized keys "
                "(`vrstyle keys DIR --name NAME` on the broker's folder authorises one)" if side == "client" else
                "its CURVE key is not among the authorized ones (`vrstyle keys DIR --name NAME` authorises one)")
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and event.get("value") == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if side == "client":
            return "does not use CurveZMQ keys (it was started without --curve): drop --curve"
        return ("it has no CurveZMQ keys, which this broker requires: give it --curve DIR" if curve else
                "it uses CurveZMQ keys and this broker none: start the broker with --curve DIR, or drop --curve there")
    return ("failed the CURVE handshake: is broker.key the broker's public key, and was the broker started with "
            "--curve? (its log says which)" if side == "client" else
            "the CURVE handshake failed (a wrong broker.key on its side?)")


def check_handshake(monitor: zmq.Socket, curve: bool, endpoint: str) -> None:
    """Read a connecting end's monitor event: a refused handshake is one :class:`VrstyleError`
    saying why (clients and workers alike)."""
    reason = handshake_failure(recv_monitor_message(monitor), curve, "client")
    if reason is not None:
        raise VrstyleError(f"the broker at {endpoint} {reason}")


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint can only be reached from this host (ipc, inproc, loopback tcp)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0]
    return scheme == "tcp" and host in LOOPBACK_HOSTS


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise VrstyleError(f"key file {path} does not exist (make keys with: vrstyle keys {path.parent})")
    if need_secret and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VrstyleError(f"secret key file {path} is accessible by others "
                           f"(mode {stat.S_IMODE(path.stat().st_mode):04o}); fix it with: chmod 600 {path}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise VrstyleError(f"{path}: not a CURVE key file ({exc})") from None
    if need_secret and not secret:
        raise VrstyleError(f"{path}: holds no secret key")
    return public, secret
