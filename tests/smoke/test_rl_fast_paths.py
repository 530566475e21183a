"""The agents' fast paths change nothing observable: the direct optimizer step (no Lightning per-step
hooks where they would do nothing) gives bit-identical weights, step counts and checkpoints to Lightning's
path, which any callback on those hooks still gets, with every hook call; the thread setting is undone."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule
from test_rl import rl_cfg

from helpers import CountingHooks
from lab.run import run


@pytest.mark.parametrize("experiment", ["ppo_cartpole", "dqn_cartpole", "ppo_pendulum"])
def test_direct_optimizer_step_is_lightnings_step(experiment, tmp_path, monkeypatch):
    backwards = []
    manual_backward = LightningModule.manual_backward
    monkeypatch.setattr(LightningModule, "manual_backward",
                        lambda self, loss, *a, **k: (backwards.append(1), manual_backward(self, loss, *a, **k))[1])
    threads = torch.get_num_threads()
    results = {}
    for path in ("direct", "lightning"):
        extra = ["+callbacks.count._target_=helpers.CountingHooks"] if path == "lightning" else []
        CountingHooks.calls, CountingHooks.threads = {}, []
        backwards.clear()
        cfg = rl_cfg(experiment, tmp_path / path, extra)
        run(cfg)
        ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
        results[path] = ckpt
        if path == "direct":
            assert not backwards  # Lightning's manual_backward was not used
        else:  # the user's callback took Lightning's path and saw every backward and optimizer step
            assert len(backwards) == ckpt["global_step"] > 0
            assert CountingHooks.calls == {"backward": ckpt["global_step"], "optimizer_step": ckpt["global_step"]}
            assert CountingHooks.threads == [1]  # agent.torch_threads=1 while training
        assert torch.get_num_threads() == threads  # and the process's own setting afterwards
    direct, lightning = results["direct"], results["lightning"]
    assert direct["global_step"] == lightning["global_step"] > 0
    assert direct["agent_state"]["env_steps"] == lightning["agent_state"]["env_steps"]
    assert direct["state_dict"].keys() == lightning["state_dict"].keys()
    for k, v in direct["state_dict"].items():
        assert torch.equal(v, lightning["state_dict"][k]), k
    opt_d, opt_l = direct["optimizer_states"][0]["state"], lightning["optimizer_states"][0]["state"]
    assert all(torch.equal(opt_d[i]["exp_avg_sq"], opt_l[i]["exp_avg_sq"]) for i in opt_d)


def test_vector_env_mode_trains(tmp_path):
    cfg = rl_cfg("ppo_cartpole", tmp_path, ["env.vectorization=vector"])
    metrics = run(cfg)
    assert metrics["eval/return"] >= 1.0
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["agent_state"]["env_steps"] >= 256 and ckpt["agent_state"]["episode_lengths"]
