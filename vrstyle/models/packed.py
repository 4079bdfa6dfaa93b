"""The shipped model file format: safetensors with bit-packed binary weights.

A student's state dict is stored compactly: 1-bit weights as packed sign bits plus one scale
per output channel (``<conv>.weight.bits``, ``<conv>.weight.scale``), int8 weights as int8
(``<conv>.weight.int8``, their steps in ``<conv>.scale``), everything else fp16. The
metadata names the model (``name``), its architecture (``arch``, ``config`` JSON, read by
the registry) and the bit packing (``packing``). :func:`decode` turns such a file back into
the network's state dict, refusing files that do not fit in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vrstyle.errors import VrstyleError
from vrstyle.kernels.bits import PACKING, PackingError, pack_signs, unpack_signs
from vrstyle.models.binary import BinaryConv2d, Int8Conv2d

BITS, SCALE, INT8 = ".weight.bits", ".weight.scale", ".weight.int8"
STORE_DTYPE = torch.float16


def encode(model: nn.Module) -> dict[str, torch.Tensor]:
    """The compact state dict of ``model`` (see the module docstring)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, BinaryConv2d):
            weight = state.pop(f"{name}.weight")
            out[name + BITS] = torch.from_numpy(pack_signs(weight.numpy()))
            out[name + SCALE] = weight.abs().mean(dim=(1, 2, 3)).to(STORE_DTYPE)
        elif isinstance(module, Int8Conv2d):
            weight = state.pop(f"{name}.weight")
            step = state[f"{name}.scale"].to(STORE_DTYPE).float()
            out[name + INT8] = (weight / step[:, None, None, None]).round().clamp(-127, 127).to(torch.int8)
    out.update({key: value.to(STORE_DTYPE) if value.is_floating_point() else value for key, value in state.items()})
    return out


def decode(stored: dict[str, torch.Tensor], model: nn.Module, path: Path | str = "model") -> dict[str, torch.Tensor]:
    """The state dict ``model`` loads from a compact one; :class:`VrstyleError` if they do not fit."""
    expected = model.state_dict()
    state = dict(stored)
    for key in [k for k in stored if k.endswith(BITS)]:
        name = key[:-len(BITS)]
        shape = tuple(expected[name + ".weight"].shape) if name + ".weight" in expected else None
        if shape is None:
            raise VrstyleError(f"{path}: packed weights {key} belong to no binary layer of this network")
        if name + SCALE not in state:
            raise VrstyleError(f"{path}: packed weights {key} come without their scales {name + SCALE}")
        scale = state.pop(name + SCALE).float()
        if scale.shape != shape[:1]:
            raise VrstyleError(f"{path}: {name + SCALE} has shape {tuple(scale.shape)}, the network expects "
                               f"{shape[:1]}")
        try:
            signs = unpack_signs(state.pop(key).numpy(), shape)
        except PackingError as exc:
            raise VrstyleError(f"{path}: {key}: {exc}") from None
        state[name + ".weight"] = torch.from_numpy(signs) * scale[:, None, None, None]
    for key in [k for k in stored if k.endswith(INT8)]:
        name = key[:-len(INT8)]
        values, step = state.pop(key), state.get(name + ".scale")
        if values.dtype != torch.int8 or step is None or name + ".weight" not in expected:
            raise VrstyleError(f"{path}: {key} is not int8 weights of an int8 layer of this network")
        if step.shape != values.shape[:1]:
            raise VrstyleError(f"{path}: {name}.scale has shape {tuple(step.shape)}, the int8 weights need "
                               f"{tuple(values.shape[:1])}")
        state[name + ".weight"] = values.float() * step.float()[:, None, None, None]
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def is_packed(keys) -> bool:
    return any(key.endswith((BITS, INT8)) for key in keys)


def save_model(model: nn.Module, path: Path | str, name: str, arch: str, config: dict,
               extra: dict[str, str] | None = None) -> int:
    """Write ``model`` as a shipped model file; returns its size in bytes."""
    from safetensors.torch import save_file

    metadata = {"name": name, "arch": arch, "config": json.dumps(config, sort_keys=True), "packing": PACKING,
                **(extra or {})}
    save_file({k: v.contiguous() for k, v in encode(model).items()}, str(path), metadata=metadata)
    return Path(path).stat().st_size


def check_packing(path: Path) -> None:
    """Refuse a packed file whose metadata names another bit packing."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        packing = (handle.metadata() or {}).get("packing")
    if packing != PACKING:
        raise VrstyleError(f"{path}: bit packing {packing!r} is not the one this vrstyle reads ({PACKING!r})")


def size_report(stored: dict[str, torch.Tensor]) -> dict[str, int]:
    """Bytes per kind of tensor in a compact state dict (binary, int8, float)."""
    report = {"binary": 0, "int8": 0, "float": 0}
    for key, value in stored.items():
        kind = "binary" if key.endswith(BITS) else "int8" if key.endswith(INT8) else "float"
        report[kind] += value.numel() * value.element_size()
    return report

