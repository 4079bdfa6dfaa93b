"""Run the broker: clients connect on one endpoint, style workers on another.

Listening beyond loopback needs ``--curve DIR`` (only keys in DIR/authorized get in) or an
explicit ``--insecure``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vrstyle import settings
from vrstyle.commands._common import (
    add_curve_arguments, add_heartbeat_argument, counted, positive_int, stop_on_signals,
)
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", default=settings.BROKER_CLIENTS, metavar="ENDPOINT",
                        help=f"where clients connect (default {settings.BROKER_CLIENTS})")
    parser.add_argument("--workers", default=settings.BROKER_WORKERS, metavar="ENDPOINT",
                        help=f"where workers connect (default {settings.BROKER_WORKERS})")
    parser.add_argument("--max-queue", type=positive_int, default=settings.BROKER_MAX_QUEUE,
                        help=f"requests waiting for a worker before new ones are refused "
                             f"(default {settings.BROKER_MAX_QUEUE})")
    add_heartbeat_argument(parser)
    add_curve_arguments(parser, default_name=None)
    parser.add_argument("--insecure", action="store_true",
                        help="allow listening beyond loopback without --curve (anyone who can reach it may use it)")


def run(args: argparse.Namespace) -> int:
    from vrstyle.transport.broker import Broker
    from vrstyle.transport.security import is_loopback, server_keys

    keys = server_keys(args.curve) if args.curve else None
    for endpoint in (args.clients, args.workers):
        if keys is None and not args.insecure and not is_loopback(endpoint):
            raise VrstyleError(f"{endpoint} is reachable beyond this host: pass --curve DIR (see `vrstyle keys`) "
                               "or --insecure")
    with Broker(args.clients, args.workers, heartbeat_s=args.heartbeat, keys=keys, max_queue=args.max_queue) as broker:
        stop = stop_on_signals()  # before the line that invites Ctrl-C
        print(f"vrstyle broker: clients on {args.clients}, workers on {args.workers}, "
              f"{'CurveZMQ keys from ' + args.curve if keys else 'no keys'}; Ctrl-C stops", file=sys.stderr, flush=True)
        broker.run(stop)
    print(f"vrstyle broker: stopped ({counted(broker.counters, 'nothing counted')})", file=sys.stderr)
    return 0
