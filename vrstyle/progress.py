"""Progress of long work, on a terminal or off one.

On a terminal, tqdm's bar. Off one (a log file, CI, a pipe), where a redrawn bar is either
hidden or one endless line, the same figures (count, rate, ETA) as a plain line every
:data:`PLAIN_INTERVAL_S`, and nothing for work shorter than that: a long run is never silent.
"""

from __future__ import annotations

import sys
from typing import Iterable, TextIO

from tqdm import tqdm

PLAIN_INTERVAL_S = 5.0


class _Lines:
    """A file for tqdm that turns each redraw into one line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.strip("\r\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, progress: bool | None = None, **options) -> tqdm:
    """A tqdm bar (``options`` as tqdm's) shown as this module says.

    Args:
        iterable: what to iterate over, or None to ``update`` by hand.
        progress: True or None show progress (a bar on a terminal, plain lines off one);
            False shows nothing (library callers that report on their own).

    >>> import io
    >>> from unittest import mock
    >>> out = io.StringIO()
    >>> with mock.patch("sys.stderr", out), mock.patch(f"{__name__}.PLAIN_INTERVAL_S", 0):
    ...     for _ in progress_bar(range(3), desc="work", unit="step"):
    ...         pass
    >>> out.getvalue().splitlines()[-1].startswith("work: 100%")
    True
    """
    if progress is False:
        return tqdm(iterable, disable=True, **options)
    if sys.stderr.isatty():
        return tqdm(iterable, file=sys.stderr, **options)
    return tqdm(iterable, file=_Lines(sys.stderr), mininterval=PLAIN_INTERVAL_S, delay=PLAIN_INTERVAL_S, ascii=True,
                ncols=100, **options)
