"""Where a binary block's error comes from: the first residual block of a student alone.

Block 1 is trained as the block-wise stage trains it (the teacher's stream in, the teacher's
stream after the block as the target, ``--steps`` Adam steps, batch 4), from the same cached
features, under each variant; the relative error of its output over all cached photos says
what binarising the weights, binarising the activations and the block's shape each cost.

    python benchmarks/block_probe.py --features runs/candy/features.pt --out benchmarks/results/block-probe

``--features`` is the ``features.pt`` of a ``vrstyle distill --init blockwise`` run folder (the
teacher's residual stream at each block boundary).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vrstyle.models import create_model, load_model
from vrstyle.models.binary import BinaryConv2d
from vrstyle.train.blockwise import init_thresholds, run_block, train_block
from vrstyle.train.calibrate import relative_mse

VARIANTS = {
    "shipped: 1-bit weights, 3 activation planes": {"planes": 3},
    "1 activation plane": {"planes": 1},
    "1-bit weights, float activations": {"layers": {"body": "binary_weights"}},
    "float weights, 3 activation planes": {"planes": 3, "float_weights": True},
    "2 weight bases, 3 activation planes": {"planes": 3, "weight_bases": 2},
}


class FloatWeights(BinaryConv2d):
    """Binary activation planes, full-precision weights: what binarising the weights costs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.act(x)
        count, batch = planes.shape[:2]
        acc = F.conv2d(planes.flatten(0, 1), self.weight, None, self.stride).unflatten(0, (count, batch))
        return sum(self.act.beta[k] * acc[k] for k in range(count)) + self.bias[None, :, None, None]


def first_block(teacher, config: dict):
    config = dict(config)
    float_weights = config.pop("float_weights", False)
    net = create_model("student", width=teacher.width, blocks=teacher.blocks, learned_scale=True,
                       **{"layers": {"body": "binary"}, **config})
    net.load_state_dict(teacher.state_dict(), strict=False)
    block = net.residual_blocks()[0]
    for conv in (m for m in block.modules() if isinstance(m, BinaryConv2d)):
        with torch.no_grad():
            conv.scale.copy_(conv.weight.abs().mean(dim=(1, 2, 3)))
        if float_weights:
            conv.__class__ = FloatWeights
    return block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, type=Path)
    parser.add_argument("--teacher", default="candy")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/block-probe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    streams = torch.load(args.features, weights_only=True)["streams"]
    inputs, targets = streams[0], streams[1]
    teacher = load_model(f"{args.teacher}/teacher")
    rows = []
    for label, config in VARIANTS.items():
        generator = torch.Generator().manual_seed(0)
        block = first_block(teacher, config)
        if any(m.act is not None for m in block.modules() if isinstance(m, BinaryConv2d)):
            init_thresholds(block, inputs[:4].float(), generator)
        started = time.perf_counter()
        before = float(relative_mse(run_block(block, inputs).float(), targets.float()))
        train_block(block, inputs, targets, args.steps, 4, 1e-3, generator)
        after = float(relative_mse(run_block(block, inputs).float(), targets.float()))
        rows.append({"variant": label, "config": config, "before": before, "after": after,
                     "seconds": time.perf_counter() - started})
        print(f"{label}: {before:.4f} -> {after:.4f}", flush=True)
    result = {"command": "python " + shlex.join(sys.argv), "photos": len(inputs), "steps": args.steps,
              "threads": args.threads, "load_average": list(os.getloadavg()), "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| block 1 variant | relative error at the start | after training |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['before']:.3f} | {r['after']:.3f} |" for r in rows]
    out.with_suffix(".md").write_text(f"# Block 1 of the {args.teacher} student, alone\n\nCommand: `{result['command']}`"
                                      f"\n\n{len(inputs)} photos' features, {args.steps} steps each.\n\n"
                                      + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
