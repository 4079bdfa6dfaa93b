"""Loading, compiling and linking the GLSL sources in ``shaders/``, with errors naming the file.

The sources ship inside the wheel as the package ``vrstyle.shaders``; an editable install
has no such package, so the checkout's top-level ``shaders/`` folder is the fallback.
A source may pull in shared code with ``#include "name.glsl"``: it is inlined with ``#line``
directives, so the driver's log points at the right line, and each source string number in the
log is replaced by its file name.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from pathlib import Path

import numpy as np
from OpenGL import GL

from vrstyle.gl.context import GLError
from vrstyle.resources import Resource

CHECKOUT_SHADERS = Path(__file__).resolve().parents[2] / "shaders"
INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)
LOG_SOURCE = re.compile(r"^(\d+):", re.MULTILINE)  # Mesa/NVIDIA logs start lines with "source:line"
STAGES = {".vert": GL.GL_VERTEX_SHADER, ".frag": GL.GL_FRAGMENT_SHADER, ".geom": GL.GL_GEOMETRY_SHADER}

PROGRAMS = {
    "accumulate": ("tile_accumulate.vert", "tile_accumulate.frag"),
    "resolve": ("fullscreen.vert", "resolve.frag"),
    "mirror": ("fullscreen.vert", "mirror.frag"),
    "overlay": ("overlay.vert", "overlay.frag"),
    "scene": ("scene.vert", "scene.frag"),
    "sky": ("fullscreen.vert", "sky.frag"),
    "reproject": ("fullscreen.vert", "reproject.frag"),
}
"""Every program vrstyle links, by name: the stages' files in the shader folder."""


@functools.lru_cache(maxsize=1)
def shader_dir() -> Path:
    """The folder holding the shader sources: the installed package's, else the checkout's."""
    try:  # a namespace package: files() is a MultiplexedPath, its files are plain paths
        packaged = importlib.resources.files("vrstyle.shaders").joinpath("resolve.frag")
        if isinstance(packaged, Path) and packaged.is_file():
            return packaged.parent
    except ModuleNotFoundError:
        pass
    if (CHECKOUT_SHADERS / "resolve.frag").is_file():
        return CHECKOUT_SHADERS
    raise GLError("the GLSL sources are missing: neither the vrstyle.shaders package nor the "
                  f"checkout's {CHECKOUT_SHADERS} holds them (reinstall vrstyle)")


def shader_path(name: str | Path) -> Path:
    """A shader file by name (``resolve.frag``) from :func:`shader_dir`, or a path as given."""
    path = Path(name)
    return path if path.is_absolute() or path.parent != Path(".") else shader_dir() / path


def expand_source(path: Path) -> tuple[str, list[Path]]:
    """The source of ``path`` with its includes inlined, and the files by source string number."""
    files = [path]

    def read(file: Path) -> str:
        try:
            return file.read_text()
        except OSError as exc:
            raise GLError(f"cannot read shader {file}: {exc.strerror or exc}") from None

    def inline(match: re.Match, including: Path, line: int) -> str:
        included = (including.parent / match.group(1))
        if included in files:
            raise GLError(f"{including.name}: {match.group(1)} is included twice (or recursively)")
        files.append(included)
        number = len(files) - 1
        return f"#line 1 {number}\n{read(included)}\n#line {line + 1} {files.index(including)}"

    text = read(path)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        match = INCLUDE.match(line)
        if match:
            lines[i] = inline(match, path, i + 1)
    return "\n".join(lines), files


def compile_shader(path: Path) -> int:
    """Compile one stage (from the suffix); :class:`GLError` quoting the driver's log on failure."""
    stage = STAGES.get(path.suffix)
    if stage is None:
        raise GLError(f"{path.name}: unknown shader stage (expected one of {', '.join(STAGES)})")
    source, files = expand_source(path)
    shader = GL.glCreateShader(stage)
    GL.glShaderSource(shader, source)
    GL.glCompileShader(shader)
    if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
        log = _text(GL.glGetShaderInfoLog(shader))
        GL.glDeleteShader(shader)
        log = LOG_SOURCE.sub(lambda m: f"{_name(files, int(m.group(1)))}:", log)
        raise GLError(f"shader {path.name} failed to compile: {_one_line(log)}")
    return shader


def link_program(*names: str | Path) -> int:
    """Compile and link the named stages into a program; :class:`GLError` naming the files on failure."""
    paths = [shader_path(name) for name in names]
    shaders = []
    try:
        for path in paths:
            shaders.append(compile_shader(path))
        program = GL.glCreateProgram()
        for shader in shaders:
            GL.glAttachShader(program, shader)
        GL.glLinkProgram(program)
        if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
            log = _text(GL.glGetProgramInfoLog(program))
            GL.glDeleteProgram(program)
            raise GLError(f"shaders {' + '.join(p.name for p in paths)} failed to link: {_one_line(log)}")
        return program
    finally:
        for shader in shaders:
            GL.glDeleteShader(shader)


class Program(Resource):
    """A linked program; ``set(name=value, ...)`` assigns uniforms by their declared GLSL types.

    Args:
        name: a name in :data:`PROGRAMS`, or stage files (names in the shader folder or paths).
    """

    def __init__(self, *names: str | Path):
        self.files = PROGRAMS[names[0]] if len(names) == 1 and names[0] in PROGRAMS else names
        self.id = link_program(*self.files)
        self.uniforms: dict[str, tuple[int, int]] = {}  # name -> (location, GL type)
        with self.building():
            for index in range(GL.glGetProgramiv(self.id, GL.GL_ACTIVE_UNIFORMS)):
                name, _, kind = GL.glGetActiveUniform(self.id, index)
                name = _text(name).removesuffix("[0]")
                self.uniforms[name] = (GL.glGetUniformLocation(self.id, name), int(kind))

    def use(self) -> "Program":
        GL.glUseProgram(self.id)
        return self

    def set(self, **uniforms) -> "Program":
        """Set uniforms of the program in use; names the compiler optimised away are skipped."""
        for name, value in uniforms.items():
            if name not in self.uniforms:
                continue
            where, kind = self.uniforms[name]
            if kind in MATRIX_SETTERS:
                MATRIX_SETTERS[kind](where, 1, GL.GL_TRUE, np.asarray(value, dtype=np.float32))
            elif kind in FLOAT_SETTERS:
                FLOAT_SETTERS[kind](where, *np.ravel(value).astype(float).tolist())
            else:  # ints, bools and samplers
                INT_SETTERS.get(kind, GL.glUniform1i)(where, *np.ravel(value).astype(int).tolist())
        return self

    def _free(self) -> None:
        GL.glDeleteProgram(self.id)


FLOAT_SETTERS = {GL.GL_FLOAT: GL.glUniform1f, GL.GL_FLOAT_VEC2: GL.glUniform2f, GL.GL_FLOAT_VEC3: GL.glUniform3f,
                 GL.GL_FLOAT_VEC4: GL.glUniform4f}
INT_SETTERS = {GL.GL_INT_VEC2: GL.glUniform2i, GL.GL_INT_VEC3: GL.glUniform3i, GL.GL_INT_VEC4: GL.glUniform4i}
MATRIX_SETTERS = {GL.GL_FLOAT_MAT3: GL.glUniformMatrix3fv, GL.GL_FLOAT_MAT4: GL.glUniformMatrix4fv}


def _name(files: list[Path], number: int) -> str:
    return files[number].name if 0 <= number < len(files) else str(number)


def _text(log) -> str:
    return (log.decode(errors="replace") if isinstance(log, bytes) else str(log)).strip()


def _one_line(log: str) -> str:
    return " | ".join(line.strip() for line in log.splitlines() if line.strip()) or "no log from the driver"
