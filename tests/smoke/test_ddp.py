"""DDP on CPU (gloo, 2 processes) for every model family, alone and inside a Hydra multirun; bf16-mixed.

Every family runs one shrunk experiment as `python -m lab ... trainer=ddp trainer.accelerator=cpu
trainer.devices=2`: a supervised classifier, a VAE, a GAN, seq2seq (RNN with attention, Transformer), the HMM, the
RBM, the DBN, multi-task, transfer learning (from a one-device cnn_mnist checkpoint), regression, PPO and DQN (SAC:
test_sac.py)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import experiment_targets, make_cfg, smoke_overrides
from lab.run import run

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
RL = ["logger=csv", "~callbacks.model_summary", "agent.total_timesteps=1024", "agent.eval_freq=512",
      "agent.eval_episodes=2", "agent.video=false", "env.max_episode_steps=60", "callbacks.progress_bar.plain=true"]
SHRINK_RL = {"ppo_cartpole": ["env.num_envs=2", "agent.num_steps=64", "agent.batch_size=64", "agent.update_epochs=2",
                              "env.normalize_obs=true", "env.normalize_reward=true"],
             "dqn_cartpole": ["agent.train_freq=16", "agent.gradient_steps=4", "agent.learning_starts=64",
                              "agent.buffer_size=1000", "agent.batch_size=16"]}


def lab(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lab", *args, f"paths.log_dir={tmp_path}/logs"]
    tests_dir = str(Path(__file__).parents[1])  # helpers.SaveRankWeights, importable in the DDP processes
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


# the families' own shrinking, as in their smoke tests (tests/smoke/test_sequences.py, test_lifecycle.py)
SHRINK = {"seq2seq_reverse": ["data.min_len=5", "data.max_len=12"],
          "hmm_seqmnist": ["model.num_states=4"],
          "rbm_mnist": ["model.hidden=32", "model.sample_steps=5"],
          "dbn_mnist": ["model.hidden_sizes=[32]", "model.pretrain_epochs=1", "trainer.max_epochs=2"],
          "transfer_fashion": ["data.labels_per_class=20"]}
RANK_WEIGHTS = ["+callbacks.weights._target_=helpers.SaveRankWeights", "+callbacks.weights.dirpath=${paths.output_dir}"]
FAMILIES = ["mlp_mnist", "vae_mnist", "gan_mnist", "seq2seq_reverse", "transformer_dates", "hmm_seqmnist",
            "rbm_mnist", "dbn_mnist", "multitask_mnist_fashion", "transfer_fashion", "regress_diabetes", "ppo_cartpole",
            "dqn_cartpole"]


def test_every_model_and_agent_class_of_the_presets_runs_under_ddp():
    targets = experiment_targets()
    built = {t["model"] or t["agent"] for t in targets.values()}
    covered = {targets[e]["model"] or targets[e]["agent"] for e in FAMILIES} | {"agents.sac.SAC"}  # SAC: test_sac.py
    assert built - covered == set()


def overrides(experiment: str, data_dir: Path) -> list[str]:
    if experiment in SHRINK_RL:
        return [f"experiment={experiment}", *RL, *SHRINK_RL[experiment]]
    base = [f"experiment={experiment}"]
    return [*base, *smoke_overrides(base), *SHRINK.get(experiment, []), f"paths.data_dir={data_dir}"]


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory, data_dir) -> Path:
    """transfer_fashion's source: a shrunk cnn_mnist run on one device."""
    cfg = make_cfg(["experiment=cnn_mnist", "test=false"], tmp_path_factory.mktemp("source"), data_dir)
    run(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("experiment", FAMILIES)
def test_ddp_two_processes_on_cpu(experiment, tmp_path, data_dir, request):
    run_dir = tmp_path / "run"
    # mlp_mnist: a whole epoch, to check that data.batch_size is per process (below)
    extra = ["trainer.limit_train_batches=null"] if experiment == "mlp_mnist" else []
    if experiment == "transfer_fashion":
        extra = [f"model.init_from={request.getfixturevalue('source_checkpoint')}"]
    proc = lab([*overrides(experiment, data_dir), *DDP, *extra, f"hydra.run.dir={run_dir}", *RANK_WEIGHTS], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # averaged gradients keep the processes' models equal: the same weights on both at the end. Batch-norm running
    # statistics may differ (the GAN's discriminator): each process updates them from its own batches between DDP's
    # broadcasts from rank 0 (sync_batchnorm is CUDA-only, lab.run); the checkpoint is rank 0's.
    first, second = (torch.load(run_dir / f"weights_rank{r}.pt", weights_only=False)["state_dict"] for r in (0, 1))
    assert first.keys() == second.keys()
    differ = [k for k in first if not torch.allclose(first[k].float(), second[k].float(), rtol=1e-5, atol=1e-6)]
    assert [k for k in differ if not k.endswith(("running_mean", "running_var"))] == [], differ
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
