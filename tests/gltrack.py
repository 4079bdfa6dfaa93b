"""Counting the GL names vrstyle makes and frees, for the lifecycle tests (in pytest and in child processes)."""

from __future__ import annotations

import numpy as np


class NameTracker:
    """Every GL name vrstyle generates and deletes, by kind: what is alive, and names freed twice."""

    KINDS = {"Textures": "texture", "Buffers": "buffer", "VertexArrays": "vertex array",
             "Framebuffers": "framebuffer", "Renderbuffers": "renderbuffer"}

    def __init__(self, patch=setattr):
        """``patch(module, name, value)`` replaces PyOpenGL's functions: pytest's ``monkeypatch.setattr``
        undoes it after the test; plain ``setattr`` (a process of its own) does not."""
        from OpenGL import GL

        self.live: set[tuple[str, int]] = set()
        self.freed_twice: list[tuple[str, int]] = []
        for suffix, kind in self.KINDS.items():
            gen, delete = getattr(GL, f"glGen{suffix}"), getattr(GL, f"glDelete{suffix}")
            patch(GL, f"glGen{suffix}", self._generator(gen, kind))
            patch(GL, f"glDelete{suffix}", self._deleter(delete, kind))
        patch(GL, "glCreateProgram", self._generator(GL.glCreateProgram, "program"))
        patch(GL, "glDeleteProgram", self._deleter(GL.glDeleteProgram, "program"))

    def _generator(self, real, kind):
        def generate(*args):
            names = real(*args)
            for name in np.atleast_1d(names).tolist():
                self.live.add((kind, int(name)))
            return names
        return generate

    def _deleter(self, real, kind):
        def delete(*args):
            for name in np.atleast_1d(args[-1]).tolist():
                if (kind, int(name)) in self.live:
                    self.live.remove((kind, int(name)))
                else:
                    self.freed_twice.append((kind, int(name)))
            return real(*args)
        return delete
