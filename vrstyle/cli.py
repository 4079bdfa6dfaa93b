"""The ``vrstyle`` command: one subcommand per job, each in :mod:`vrstyle.commands`.

Subcommand modules import heavy libraries (torch, GL) only when they run, so roles that do
not need them (the headset client) never load them. Mistakes a user can fix end in one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import _thread
import argparse
import importlib
import logging
import signal
import sys
import threading

from tiles import GridError
from vrstyle.errors import EXIT_USER_ERROR, VrstyleError

COMMANDS = {
    "info": ("vrstyle.commands.info", "say what this machine can do: versions, CPU kernels, GPUs, OpenGL, OpenXR"),
    "stylize": ("vrstyle.commands.stylize", "stylise an image file through the tiled pipeline"),
    "mirror": ("vrstyle.commands.mirror", "show the demo scene or a stereo source stylised live in a window"),
    "headset": ("vrstyle.commands.headset", "show the stylised demo scene in an OpenXR headset"),
    "broker": ("vrstyle.commands.broker", "route tiles from clients to style workers"),
    "worker": ("vrstyle.commands.worker", "serve styles on one device for a broker"),
    "workers": ("vrstyle.commands.workers", "start one worker per GPU (or N on the CPU) and keep them running"),
    "keys": ("vrstyle.commands.keys", "make CurveZMQ key pairs for a broker beyond loopback"),
    "distill": ("vrstyle.commands.distill", "train a (binary) student network from a teacher"),
    "eval": ("vrstyle.commands.eval", "compare models with their teacher: fidelity, size, ops, CPU speed"),
    "train": ("vrstyle.commands.train", "train a new feed-forward style from any artwork (perceptual losses)"),
    "paint": ("vrstyle.commands.paint", "paint a photo in the style of any artwork by optimisation (Gatys), with deep dream"),
    "export": ("vrstyle.commands.export", "write a model as an ONNX file for other runtimes, with its card"),
    "bench": ("vrstyle.commands.bench", "measure tile throughput headless: rates, latency, stages, scaling"),
}
"""Subcommand -> (module with add_arguments(parser) and run(args), one-line help)."""

EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """Reports bad arguments in one line instead of usage plus error."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help names every option's default, unless its help already does or there is none to name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.nargs == 0 or action.default in (None, [], ()):
            return text
        return f"{text} (default %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vrstyle")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vrstyle", description="Real-time artistic style transfer for VR.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"vrstyle {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__,
                                    formatter_class=DefaultsHelpFormatter)
        sub.add_argument("-v", "--verbose", dest="more_verbose", action="count", default=0,
                         help="more log output (-vv for debug); also before the command")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def install_interrupts() -> None:
    """SIGTERM ends a command as Ctrl-C does, and neither is lost inside a ctypes callback."""
    global _other_unraisable
    signal.signal(signal.SIGTERM, _interrupt)
    if sys.unraisablehook is not _redeliver_swallowed_interrupt:
        _other_unraisable = sys.unraisablehook
        sys.unraisablehook = _redeliver_swallowed_interrupt


_other_unraisable = sys.__unraisablehook__


def _redeliver_swallowed_interrupt(unraisable) -> None:
    """Ctrl-C or SIGTERM that landed inside a ctypes callback (numba compiling a kernel on
    first use calls back into Python through llvmlite) is ignored there by Python, and the
    command would run on: deliver it again once the callback has returned, as SIGTERM (whose
    handler is ours; a process started in the background ignores SIGINT). Only an interrupt
    known to be lost is repeated, so the cleanup a delivered one starts is never cut short."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        threading.Timer(0.05, _thread.interrupt_main, (signal.SIGTERM,)).start()
    else:
        _other_unraisable(unraisable)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM ends a command as Ctrl-C does: its resources (workers, shared memory) are released
    # on the way out. Servers install their own handlers to leave their loops cleanly.
    install_interrupts()
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose + args.more_verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return args.run(args) or 0
    except (VrstyleError, GridError) as exc:
        print(f"vrstyle {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"vrstyle {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
