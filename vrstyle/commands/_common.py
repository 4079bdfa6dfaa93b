"""Helpers shared by the commands: stop signals, CURVE options and argument types."""

from __future__ import annotations

import argparse
import signal
import threading

from vrstyle.errors import VrstyleError
from vrstyle.transport import protocol as P


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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value
