"""Helpers shared by the commands: stop signals, CURVE options, argument types, the broker
connection and counted nouns."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING, Sequence

import tiles
from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.transport import protocol as P

if TYPE_CHECKING:
    import torch

    from vrstyle.transport.client import TransportClient


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so servers leave their loops cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def add_heartbeat_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heartbeat", type=positive_float, default=P.HEARTBEAT_INTERVAL_S, metavar="S",
                        help=f"heartbeat interval, the same for broker and workers (default {P.HEARTBEAT_INTERVAL_S:g} s; "
                             f"a peer is dead after {P.HEARTBEAT_LIVENESS} silent intervals)")


def add_curve_arguments(parser: argparse.ArgumentParser, default_name: str | None) -> None:
    parser.add_argument("--curve", metavar="DIR", help="encrypt and authenticate with the CurveZMQ keys in DIR "
                                                       "(made by `vrstyle keys DIR`)")
    if default_name is not None:
        parser.add_argument("--key-name", default=default_name,
                            help=f"which key pair in DIR is ours (default {default_name})")


def add_codec_arguments(parser: argparse.ArgumentParser) -> None:
    """How tiles travel to workers on other hosts (same-host workers share memory instead)."""
    from vrstyle.transport import codec

    parser.add_argument("--codec", choices=codec.CODECS, default="auto",
                        help="compress tiles sent as pixels: auto (JPEG to workers on another host, nothing on this "
                             "one), none, jpeg, or zstd (lossless) (default auto)")
    parser.add_argument("--quality", type=argument_type(_quality), default=codec.QUALITY,
                        help=f"JPEG quality, 1..100 (default {codec.QUALITY})")


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise VrstyleError(f"--quality takes a whole number 1..100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise VrstyleError(f"--quality takes 1..100, got {value}")
    return value


def parse_rings(text: str) -> tuple[float, ...]:
    """Foveation ring radii "0.35,0.7" -> (0.35, 0.7): one or two, increasing, non-negative.

    >>> parse_rings("0.35, 0.7")
    (0.35, 0.7)
    """
    try:
        rings = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise VrstyleError(f"--rings takes radii like 0.35,0.7, got {text!r}") from None
    try:
        tiles.tile_scales(tiles.plan_grid(64, 64), (0, 0), rings)
    except tiles.GridError as exc:
        raise VrstyleError(str(exc)) from None
    return rings


def add_rings_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rings", type=argument_type(parse_rings), default=tiles.RINGS, metavar="R1[,R2]",
                        help="foveation: tiles within R1 of the eye's centre (in half eye sizes) at full resolution, "
                             "within R2 at 1/2, beyond at 1/4 (default " + ",".join(map(str, tiles.RINGS)) + ")")


def add_carry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--carry", type=argument_type(settings.check_carry), metavar="SHARE",
                        help="temporal consistency: the previous frame's share where it reprojects onto the same "
                             f"surface, in (0, 1]; more holds strokes stiller and softens them (default {settings.CARRIED})")


def carry_option(args: argparse.Namespace) -> float:
    """``--carry``, or the default; refused without temporal consistency, where it would do nothing."""
    if args.carry is not None and not settings.temporal_consistent(args.consistency):
        raise VrstyleError("--carry needs --consistency temporal or both")
    return settings.CARRIED if args.carry is None else args.carry


def add_torch_arguments(parser: argparse.ArgumentParser, default_device: str | None = None) -> None:
    """``--device`` and ``--threads`` of a command that trains or optimises in its own process
    (``default_device`` None: CUDA when there is one)."""
    default = "cuda when there is one" if default_device is None else default_device
    parser.add_argument("--device", default=default_device, help=f"cpu, cuda or cuda:N (default: {default})")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


def torch_device(args: argparse.Namespace) -> "torch.device":
    """Applies ``--threads`` and returns the checked ``--device`` (see :func:`add_torch_arguments`).

    Raises:
        VrstyleError: a device that does not exist or cannot be used here.
    """
    import torch

    from vrstyle.models.engine import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return pick_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def argument_type(parse):
    """An argparse type from a parser raising VrstyleError, so mistakes stay one line."""

    def convert(text: str):
        try:
            return parse(text)
        except VrstyleError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    """The type of every count option: at least 1, refused while parsing, before any work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def open_broker(args: argparse.Namespace, styles: Sequence[str] = ()) -> tuple[TransportClient, list[str]]:
    """A client of ``--broker`` and the styles to ask it for, once its answer shows workers serving them.

    ``styles`` empty means every style its workers serve. An unreachable broker, one without
    workers or without one of ``styles`` fails here in one line, before any work.
    """
    from vrstyle.transport.client import TransportClient
    from vrstyle.transport.security import peer_keys

    client = TransportClient(args.broker, keys=peer_keys(args.curve, args.key_name) if args.curve else None,
                             compress=args.codec, quality=args.quality)
    try:
        workers = client.status()["workers"]
        served = sorted({style for worker in workers for style in worker["styles"]})
        if not served:
            raise VrstyleError(f"the broker at {args.broker} has no workers (start some with `vrstyle worker`)")
        missing = [style for style in styles if style not in served]
        if missing:
            raise VrstyleError(f"no worker of the broker at {args.broker} serves style{'s' * (len(missing) > 1)} "
                               f"{', '.join(map(repr, missing))} (served: {', '.join(served)})")
    except BaseException:
        client.close()
        raise
    return client, list(styles) or served


def counted(counters: dict[str, int], nothing: str) -> str:
    """A server's counters for its last line: "name: count, ..." sorted by name, or ``nothing``.

    >>> counted({"tiles": 4, "requests": 1}, "no requests"), counted({}, "no requests")
    ('requests: 1, tiles: 4', 'no requests')
    """
    return ", ".join(f"{name}: {count}" for name, count in sorted(counters.items())) or nothing


def plural(count: int, noun: str, many: str | None = None) -> str:
    """A count with its noun, as English says it ("1 tile", never "1 tiles").

    >>> plural(1, "tile"), plural(4, "tile"), plural(2, "loss", "losses")
    ('1 tile', '4 tiles', '2 losses')
    """
    return f"{count} {noun if count == 1 else many or noun + 's'}"
