"""RLModule's optimizer steps: zero_grad, backward, gradient-norm clipping and the step, through Lightning or,
where its per-step hooks would do nothing, straight to torch."""

from __future__ import annotations

from typing import Any

import torch


class OptimizerStepping:
    """`optimizer_step_on(loss, opt)` for every minibatch of the agents; clipping at `max_grad_norm`."""

    max_grad_norm: float | None = None  # set by the agents

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this inside `opt.step()`, after a 16-mixed grad scaler has unscaled the gradients:
        # clipping right after manual_backward would clip the scaled gradients (65,536x too large) instead.
        if not self.max_grad_norm:
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            # A fused optimizer (the presets' Adam) unscales inside its own step, so Lightning left the gradients
            # scaled: unscale them here (GradScaler then tells the fused step they are unscaled).
            scaler.unscale_(optimizer)
        # Not Lightning's clip_gradients: under mixed precision that refuses fused optimizers. torch's
        # clip_grad_norm_ arithmetic (total 2-norm; scale by max_norm / (norm + 1e-6), at most 1), without its
        # per-call grouping by device and dtype, which costs as much as the arithmetic for small nets.
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, (self.max_grad_norm / (norm + 1e-6)).clamp_(max=1.0))

    _direct_step = False  # set in on_train_start: see hooks_do_nothing

    def hooks_do_nothing(self) -> bool:
        """True when Lightning's per-step machinery around backward and optimizer.step would do nothing but
        count: one device, 32-bit precision (no grad scaler, no autocast), no profiler, and no callback or
        module override of the backward and optimizer-step hooks. Then `optimizer_step_on` calls torch
        directly (0.3-0.5 ms less per minibatch); DDP's gradient averaging, mixed precision and any user
        callback that hooks these steps take Lightning's path, unchanged."""
        from lightning.pytorch import Callback, LightningModule
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.profilers import PassThroughProfiler
        from lightning.pytorch.strategies import SingleDeviceStrategy

        trainer = self.trainer
        hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")
        if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
            return False
        if not isinstance(trainer.profiler, PassThroughProfiler):
            return False
        if any(getattr(type(cb), h) is not getattr(Callback, h) for cb in trainer.callbacks for h in hooks):
            return False
        from agents.common.module import RLModule

        own = {"on_before_optimizer_step": RLModule.on_before_optimizer_step}  # our clipping, called directly
        return all(getattr(type(self), h) is own.get(h, getattr(LightningModule, h))
                   for h in (*hooks, "backward", "optimizer_step", "optimizer_zero_grad"))

    def optimizer_step_on(self, loss: torch.Tensor, opt: Any) -> None:
        """zero_grad, backward, gradient clipping and the optimizer step for one minibatch's loss: through
        Lightning (`manual_backward`, `LightningOptimizer.step`) or, where its hooks would do nothing
        (`hooks_do_nothing`), straight to torch with the same clipping and the same step count."""
        if not self._direct_step:
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()  # clips the gradients first (on_before_optimizer_step)
            return
        optimizer = opt.optimizer
        optimizer.zero_grad()
        loss.backward()
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()  # what LightningOptimizer.step counts (trainer.global_step, checkpoints)
        self.on_before_optimizer_step(optimizer)
        optimizer.step()
        progress.increment_completed()
