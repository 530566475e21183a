"""DDP on CPU (gloo, 2 processes) for every model family, alone and inside a Hydra multirun; bf16-mixed."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import SMOKE, make_cfg

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
RL = ["logger=csv", "~callbacks.model_summary", "agent.total_timesteps=1024", "agent.eval_freq=512",
      "agent.eval_episodes=2", "agent.video=false", "env.max_episode_steps=60", "callbacks.progress_bar.plain=true"]
SHRINK_RL = {"ppo_cartpole": ["env.num_envs=2", "agent.num_steps=64", "agent.batch_size=64", "agent.update_epochs=2",
                              "env.normalize_obs=true", "env.normalize_reward=true"],
             "dqn_cartpole": ["agent.train_freq=16", "agent.gradient_steps=4", "agent.learning_starts=64",
                              "agent.buffer_size=1000", "agent.batch_size=16"]}


def lab(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lab", *args, f"paths.log_dir={tmp_path}/logs"]
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def overrides(experiment: str, data_dir: Path) -> list[str]:
    if experiment in SHRINK_RL:
        return [f"experiment={experiment}", *RL, *SHRINK_RL[experiment]]
    return [f"experiment={experiment}", *SMOKE, f"paths.data_dir={data_dir}"]


@pytest.mark.parametrize("experiment", ["mlp_mnist", "vae_mnist", "gan_mnist", "ppo_cartpole", "dqn_cartpole"])
def test_ddp_two_processes_on_cpu(experiment, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    # mlp_mnist: a whole epoch, to check that data.batch_size is per process (below)
    whole = ["trainer.limit_train_batches=null"] if experiment == "mlp_mnist" else []
    proc = lab([*overrides(experiment, data_dir), *DDP, *whole, f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if experiment == "mlp_mnist":
        # 300 training images (400 - 100 for validation), data.batch_size=32: each of the 2 processes takes 150 in
        # ceil(150 / 32) = 5 steps of 32, so the epoch is 5 optimizer steps of 64 examples (one process: 10 of 32)
        assert "data.batch_size=32 per process x 2 processes = 64 examples per optimizer step" in (proc.stdout +
                                                                                                  proc.stderr)
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert last["global_step"] == 5
    assert proc.stdout.count("Final metrics:") == 1  # printed by rank 0 only
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["metrics"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"]  # a plain state dict: loadable on one device
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    if experiment in SHRINK_RL:  # the budget counts env steps over both processes
        assert ckpt["agent_state"]["env_steps"] == 1024
    if experiment == "ppo_cartpole":  # normalization statistics of both processes' data: 1024 steps + 4 resets
        assert float(ckpt["agent_state"]["obs_rms"]["count"]) == pytest.approx(1028 + 1e-4)
        assert float(ckpt["agent_state"]["return_rms"]["count"]) == pytest.approx(1024 + 1e-4)
    assert len(list(run_dir.glob("csv/*/metrics.csv"))) == 1  # one logger, from rank 0


# one per kind of loop: a classifier (two jobs), a GAN (manual optimization), an agent (its own iterations)
@pytest.mark.parametrize(("experiment", "seeds"), [("mlp_mnist", "0,1"), ("gan_mnist", "0"), ("ppo_cartpole", "0")])
def test_ddp_inside_a_multirun_keeps_one_folder_per_job(experiment, seeds, tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    proc = lab(["-m", *overrides(experiment, data_dir), *DDP, f"seed={seeds}", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [str(i) for i in range(len(seeds.split(",")))]  # no stray folders from the DDP child processes
    with (sweep / "summary.csv").open() as f:
        header, *rows = list(csv.reader(f))
    metric = make_cfg([f"experiment={experiment}"], tmp_path, None, smoke=False).optimized_metric
    assert header[:5] == ["rank", "job", "overrides", "status", metric]
    assert len(rows) == len(jobs) and all(r[3] == "ok" and r[4] for r in rows)  # every job scored by rank 0


def test_bf16_mixed_precision(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    longer = ["trainer.max_epochs=3", "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
              "trainer.limit_test_batches=null"]
    proc = lab([*overrides("cnn_mnist", data_dir), *longer, "trainer.precision=bf16-mixed", f"hydra.run.dir={run_dir}"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bf16" in proc.stderr + proc.stdout  # Lightning reports the precision it runs in
    assert json.loads((run_dir / "result.json").read_text())["metrics"]["test/acc"] > 0.5  # learnt; chance is 0.1
