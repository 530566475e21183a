"""Mixed precision: gradients are clipped after the grad scaler unscales them, with fused and plain Adam.

A CPU GradScaler (torch.amp.GradScaler("cpu")) in Lightning's MixedPrecision plugin runs the same code path
as 16-mixed on a GPU. Clipping right after `manual_backward` (as the agents once did) clipped the *scaled*
gradients, so the step saw norm max_grad_norm / scale, and with the presets' fused Adam Lightning refused to
clip at all (RuntimeError), under bf16-mixed too.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.precision import MixedPrecision

from helpers import build, make_cfg

PPO = ["experiment=ppo_cartpole", "env.num_envs=2", "agent.num_steps=64", "agent.batch_size=64",
       "agent.update_epochs=4", "agent.total_timesteps=128", "agent.eval_freq=128", "agent.eval_episodes=1",
       "agent.video=false"]


def fit_recording_norms(agent, precision: str | MixedPrecision) -> list[float]:
    """Train one iteration; the total gradient norm each optimizer step sees (read in a step post-hook: the gradients the update used)."""
    norms: list[float] = []
    make_optimizer = agent.configure_optimizers

    def configure_optimizers() -> torch.optim.Optimizer:
        opt = make_optimizer()
        opt.register_step_post_hook(lambda o, args, kwargs: norms.append(float(torch.nn.utils.get_total_norm(
            [p.grad for g in o.param_groups for p in g["params"] if p.grad is not None]))))
        return opt

    agent.configure_optimizers = configure_optimizers
    plugin = {"plugins": [precision]} if isinstance(precision, MixedPrecision) else {"precision": precision}
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, max_epochs=1, **plugin)
    trainer.fit(agent)
    return [n for n in norms if n == n]  # a step the scaler skips (inf gradients) shows NaN


@pytest.mark.parametrize(("precision", "fused"), [("16-mixed", True), ("16-mixed", False), ("bf16-mixed", True)])
def test_ppo_clips_the_true_gradients(precision, fused, tmp_path):
    agent = build(make_cfg([*PPO, f"agent.optimizer.fused={fused}"], tmp_path, None, smoke=False)).agent
    if precision == "16-mixed":
        # 2**10, not 2**16: CartPole's first value losses would overflow fp16 and the scaler would skip those steps
        precision = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
    norms = fit_recording_norms(agent, precision)
    assert len(norms) >= 6  # 4 epochs x 2 minibatches, at most a couple skipped by the scaler
    # the rollout's true gradient norms exceed 0.5, so every step is clipped to exactly max_grad_norm
    assert norms == pytest.approx([agent.max_grad_norm] * len(norms), rel=1e-3)
