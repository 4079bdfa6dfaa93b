"""Block-wise training's building blocks, without the shared data."""

from __future__ import annotations

import copy

import torch

from vrstyle.models.students import StudentNet
from vrstyle.train import blockwise


def test_an_interrupted_block_resumes_exactly_where_it_stood(monkeypatch, random_weights):
    """Checkpointed mid-block and resumed from that state, a block ends bit for bit as one never stopped."""
    monkeypatch.setattr(blockwise, "CHECKPOINT_SECONDS", 0.0)
    torch.manual_seed(0)
    block = random_weights(StudentNet(width=4, blocks=1, layers={"body": "binary"}, planes=2)).res1
    inputs, targets = torch.randn(6, 16, 8, 8), torch.randn(6, 16, 8, 8)
    start = copy.deepcopy(block)
    states = []

    def keep(state: dict) -> None:
        states.append((copy.deepcopy(state), copy.deepcopy(block.state_dict())))

    whole = blockwise.train_block(block, inputs, targets, 5, 2, 1e-2, torch.Generator().manual_seed(1),
                                  on_checkpoint=keep)
    assert [state["step"] for state, _ in states] == [1, 2, 3, 4]
    state, weights = states[1]
    start.load_state_dict(weights)
    resumed = blockwise.train_block(start, inputs, targets, 5, 2, 1e-2, torch.Generator().manual_seed(99), state=state)
    assert resumed == whole
    for name, value in block.state_dict().items():
        assert torch.equal(start.state_dict()[name], value), name
