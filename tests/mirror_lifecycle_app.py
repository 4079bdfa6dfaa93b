"""The windowed GL owners' lifecycle, in a process of its own under Xvfb (run by tests/test_mirror.py).

A window (:class:`WindowContext`), the desktop mirror and the headset's mirror window: each
frees every GL name it made exactly once, a second close frees nothing, and a constructor that
fails half-way leaves nothing alive. Prints one ``ok ...`` line per check.
"""

from __future__ import annotations

import sys

import numpy as np


class Invert:
    """A stand-in engine (no torch): any object with the StyleEngine methods works."""

    stats_channels = 1

    def stylize_and_measure(self, tiles, stats, crop, margin, bounds=None):
        out = 255 - tiles[:, crop:tiles.shape[1] - crop, crop:tiles.shape[2] - crop, :3]
        return out, np.ones((1 if stats is None else len(tiles), 3, 1))


def main() -> int:
    from OpenGL import GL

    from gltrack import NameTracker
    from vrstyle.gl.context import GLError, WindowContext
    from vrstyle.mirror import DesktopMirror, MirrorOptions
    from vrstyle.pipeline import FramePipeline
    from vrstyle.sources import StillSource
    from vrstyle.transport.local import LocalBackend
    from vrstyle.xr.mirror import HeadsetMirror

    window = WindowContext(192, 64, "lifecycle", visible=False)
    names = NameTracker()
    pipeline = FramePipeline.plan(LocalBackend(Invert()), 64, 96, "invert", tile=32, halo=8, overlap=4)
    eye = np.zeros((64, 96, 3), np.uint8)
    source = StillSource(eye, eye, "black")
    makers = {"desktop mirror": lambda: DesktopMirror(window, source, pipeline, MirrorOptions(styles=["invert"])),
              "headset mirror": lambda: HeadsetMirror(window)}
    for label, make in makers.items():
        first = make()
        assert names.live, f"{label} made no GL names"
        first.close()
        assert not names.live, f"{label} left {sorted(names.live)}"
        second = make()
        alive = set(names.live)
        first.close()
        assert names.live == alive, f"a second close of the {label} freed {sorted(alive - names.live)}"
        second.close()
        assert not names.live and not names.freed_twice, (label, names.live, names.freed_twice)
        print(f"ok twice: {label}", flush=True)

    real = GL.glGenVertexArrays
    for label, make in makers.items():
        calls = []

        def failing(*args):
            calls.append(args)
            if len(calls) == (2 if label == "desktop mirror" else 1):  # the desktop mirror's text panel
                raise GLError("injected")
            return real(*args)

        GL.glGenVertexArrays = failing
        try:
            make()
        except GLError as exc:
            assert str(exc) == "injected", exc
        else:
            raise AssertionError(f"the {label} was made although a vertex array failed")
        finally:
            GL.glGenVertexArrays = real
        assert not names.live and not names.freed_twice, (label, names.live, names.freed_twice)
        print(f"ok half-way: {label}", flush=True)

    pipeline.close()
    window.close()
    window.close()
    assert window.closed
    print("ok window", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
