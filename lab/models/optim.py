"""Optimizers and schedulers from `_partial_` config nodes, shared by every LightningModule."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lab.contracts import model_hooks


def scheduler_config(factory: Callable[..., Any], optimizer: torch.optim.Optimizer, trainer: Trainer,
                     name: str = "train/lr") -> dict[str, Any]:
    """Fill in what a scheduler needs from the trainer (the run's length), and how Lightning steps it.
    `name` is the key under which LearningRateMonitor logs the learning rate."""
    return {**_stepping(factory, optimizer, trainer), "name": name}


def _stepping(factory: Callable[..., Any], optimizer: torch.optim.Optimizer, trainer: Trainer) -> dict[str, Any]:
    target = factory.func if isinstance(factory, functools.partial) else factory
    given = factory.keywords if isinstance(factory, functools.partial) else {}
    sched = torch.optim.lr_scheduler
    if target is sched.OneCycleLR:
        extra = {} if "total_steps" in given else {"total_steps": _one_cycle_steps(
            int(trainer.estimated_stepping_batches), given.get("pct_start", 0.3))}
        scales = [g.get("lr_scale", 1.0) for g in optimizer.param_groups]
        if any(s != 1.0 for s in scales) and "max_lr" in given:  # per-group peaks (transfer's pretrained_lr_scale)
            extra["max_lr"] = [given["max_lr"] * s for s in scales]
        return {"scheduler": factory(optimizer, **extra), "interval": "step"}
    if target is sched.CosineAnnealingLR and "T_max" not in given:
        return {"scheduler": factory(optimizer, T_max=max(1, trainer.max_epochs or 1)), "interval": "epoch"}
    if target is sched.ReduceLROnPlateau:
        return {"scheduler": factory(optimizer), "monitor": "val/loss", "interval": "epoch"}
    return {"scheduler": factory(optimizer), "interval": "epoch"}


def _one_cycle_steps(steps: int, pct_start: float) -> int:
    """The run's steps for OneCycleLR, one more where its warm-up would end exactly on step 1 (pct_start x
    total_steps == 1, e.g. 4 steps at 0.25): torch then divides by the warm-up's zero length. The extra step is
    never taken, so the schedule only ends a step short of its floor."""
    steps = max(1, steps)
    return steps + 1 if float(pct_start * steps) - 1 == 0 else steps


def configure(module: LightningModule, optimizer: Callable[..., torch.optim.Optimizer],
              scheduler: Callable[..., Any] | None) -> dict[str, Any]:
    """What `configure_optimizers` returns for one optimizer over `module`'s trainable parameters and an
    optional scheduler (only a scheduler needs the trainer, for the run's length). A module with a
    `transfer` (lab.models.transfer) gives its parameter groups: frozen ones left out, pretrained ones at
    `lr_scale` times the learning rate (lab.contracts.ModelHooks.optimizer_param_groups)."""
    groups = model_hooks(module).optimizer_param_groups()
    opt = optimizer(params=module.parameters() if groups is None else groups)
    for group in opt.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    if scheduler is None:
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": scheduler_config(scheduler, opt, module.trainer)}
