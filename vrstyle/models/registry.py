"""Model registry: architecture names -> constructors, model names -> files.

Architectures register themselves with :func:`register_architecture`. Models are named
``<style>/<variant>``: the full-precision teachers (``candy/teacher``, found in the shared
data folder when it is present) and the students shipped inside the package. A bare style
name picks the first available variant in :data:`PREFERRED_VARIANTS`; a path to a model
file works anywhere a name does.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vrstyle import settings
from vrstyle.errors import VrstyleError

STYLES = ("candy", "mosaic", "rain_princess", "udnie", "pointilism")
PREFERRED_VARIANTS = ("binary", "teacher")
"""Which variant a bare style name means, best first."""
TEACHER_ARCH = ("johnson", {"width": 32, "blocks": 5})
CARTOON_TEACHER = ("cartoon/teacher", "teachers/cartoon/whitebox.pth", "cartoon", {"refine": True})
"""White-box Cartoonization's generator with its guided filter (:mod:`vrstyle.models.cartoon`)."""
MODEL_SUFFIXES = (".pth", ".pt", ".safetensors")
SHIPPED_DIR = Path(__file__).parent / "weights"

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Class or function decorator adding a network constructor under ``name``."""

    def add(constructor):
        ARCHITECTURES[name] = constructor
        return constructor

    return add


def create_model(arch: str, **config) -> nn.Module:
    """A fresh network of a registered architecture; raises :class:`VrstyleError` if unknown."""
    if arch not in ARCHITECTURES:
        raise VrstyleError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    try:
        return ARCHITECTURES[arch](**config)
    except (TypeError, ValueError) as exc:
        raise VrstyleError(f"bad configuration for architecture {arch!r} {config}: {exc}") from None


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights are and how to build the network they fit."""

    name: str
    path: Path
    arch: str
    config: dict = field(default_factory=dict)

    @property
    def style(self) -> str:
        return self.name.split("/")[0]

    def load(self) -> nn.Module:
        """The network in eval mode with these weights; :class:`VrstyleError` if they do not fit."""
        model = create_model(self.arch, **self.config)
        load_weights(model, self.path)
        return model.eval()


def shared_data_dir() -> Path | None:
    """The shared data folder: ``$VRSTYLE_DATA``, else ``../shared/data`` beside the checkout."""
    if os.environ.get(settings.DATA_ENV):
        path = Path(os.environ[settings.DATA_ENV])
        return path if path.is_dir() else None
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = base.parent / "shared" / "data"
        if path.is_dir():
            return path
    return None


def available_models() -> dict[str, ModelSpec]:
    """Every model that can be loaded here, by name."""
    models: dict[str, ModelSpec] = {}
    data = shared_data_dir()
    if data is not None:
        for style in STYLES:
            path = data / "teachers" / "johnson" / f"{style}.pth"
            if path.is_file():
                models[f"{style}/teacher"] = ModelSpec(f"{style}/teacher", path, *TEACHER_ARCH)
        name, relative, arch, config = CARTOON_TEACHER
        if (data / relative).is_file():
            models[name] = ModelSpec(name, data / relative, arch, config)
    for path in sorted(SHIPPED_DIR.glob("*.safetensors")):
        spec = _shipped_spec(path)
        models[spec.name] = spec
    return models


def resolve_model(name: str) -> ModelSpec:
    """The model a user means by ``name``: ``candy``, ``candy/teacher`` or a file path.

    Raises:
        VrstyleError: nothing by that name is available here (the message lists what is).
    """
    models = available_models()
    key = name.replace("-", "_")
    if key in models:
        return models[key]
    for variant in PREFERRED_VARIANTS:
        if f"{key}/{variant}" in models:
            return models[f"{key}/{variant}"]
    if name.endswith(MODEL_SUFFIXES):
        path = Path(name)
        if not path.is_file():
            raise VrstyleError(f"model file {name} does not exist")
        return _shipped_spec(path) if path.suffix == ".safetensors" else ModelSpec(name, path, *TEACHER_ARCH)
    short = sorted({spec.style for spec in models.values() if spec.name.endswith("/binary")})
    known = ", ".join(short + sorted(models)) or "none"
    hint = "" if shared_data_dir() else f" (teachers need the shared data folder; set {settings.DATA_ENV})"
    raise VrstyleError(f"unknown style {name!r}; available here: {known}{hint}")


def load_model(name: str) -> nn.Module:
    """Shorthand for ``resolve_model(name).load()``."""
    return resolve_model(name).load()


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict file (plain, or bit-packed: :mod:`vrstyle.models.packed`) into ``model``
    strictly, explaining any mismatch in one line."""
    from vrstyle.models import packed

    state = read_state_dict(path)
    if packed.is_packed(state):
        packed.check_packing(path)
        state = packed.decode(state, model, path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"{label} keys: {_some(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected))
                 if keys]
        raise VrstyleError(f"{path}: weights do not fit this network: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise VrstyleError(f"{path}: {key} has shape {tuple(tensor.shape)}, the network "
                               f"expects {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True)


def _some(names: list[str], shown: int = 3) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` (loaded without unpickling code) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise VrstyleError(f"model file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message is six lines of advice on loading code we never load
        raise VrstyleError(f"{path}: holds Python objects besides tensors, which vrstyle does not load "
                           "(a model file is a state dict of tensors)") from None
    except Exception as exc:  # corrupt or truncated files raise many types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise VrstyleError(f"{path}: not a readable model file ({type(exc).__name__}: {first_line})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VrstyleError(f"{path}: expected a state dict of tensors")
    return state


def _shipped_spec(path: Path) -> ModelSpec:
    """Read a shipped model's name and architecture from its safetensors metadata."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        config = json.loads(meta.get("config", "{}"))
    except Exception as exc:
        raise VrstyleError(f"{path}: not a vrstyle model file ({type(exc).__name__}: {exc})") from None
    if "arch" not in meta or not isinstance(config, dict):
        raise VrstyleError(f"{path}: a safetensors file without vrstyle's metadata (arch, config): "
                           "not a model vrstyle wrote")
    return ModelSpec(meta.get("name", path.stem), path, meta["arch"], config)
