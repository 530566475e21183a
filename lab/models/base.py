"""What the lab's LightningModules share beyond lab.models.optim: running a module in eval mode for a moment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode without gradients inside the block (dropout off, batch-norm statistics untouched),
    in the mode it was in afterwards: a dummy forward pass, a sample, a greedy decode in the middle of training."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)
