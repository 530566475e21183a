"""GPU checks (`make test-gpu`): every family on `trainer.accelerator=gpu`, mixed precision, DDP, an Optuna sweep.

The families, one shrunk run each (the smoke tests' overrides plus the device): the classifier (CNN, ResNet, LSTM,
Transformer backbones), VAEs, GANs, seq2seq (RNN with attention, Transformer), the HMM, the RBM, the DBN,
multi-task, transfer learning, and the agents PPO (MLP and Nature CNN), DQN, SAC and SB3's PPO and DQN.

Skipped, with the reason, when CUDA is absent (tests/conftest.py); `make test` deselects them. To rehearse this
code on a CPU: `LAB_GPU_TESTS_ACCELERATOR=cpu pytest -m gpu tests/gpu` (16-mixed, NCCL and multi-GPU cases then
skip: they need CUDA). Every run carries `devices.DeviceProbe`, which asserts that the module and every tensor
reachable from it (the quality classifier, buffers, metrics) are on the GPU in training, validation and test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from devices import DeviceProbe

from helpers import SMOKE, make_cfg
from lab.run import run

pytestmark = pytest.mark.gpu

ACCELERATOR = os.environ.get("LAB_GPU_TESTS_ACCELERATOR", "gpu")
DEVICE = "cuda" if ACCELERATOR == "gpu" else "cpu"
ON_DEVICE = [f"trainer.accelerator={ACCELERATOR}", "trainer.devices=1",
             "+callbacks.device_probe._target_=devices.DeviceProbe"]
needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA (16-mixed, NCCL)")

SUPERVISED = {"classifier": "cnn_mnist", "resnet": "resnet_fashion", "lstm": "lstm_seqmnist",
              "transformer": "transformer_seqmnist"}
GENERATIVE = {"vae": "vae_mnist", "conv_vae": "conv_vae_mnist", "gan": "gan_mnist", "wgan_gp": "wgan_gp_mnist",
              "cgan": "cgan_mnist"}
# the other families, as their smoke tests shrink them (tests/smoke/test_sequences.py, test_lifecycle.py); transfer
# starts from a cnn_mnist checkpoint trained on the device (fixture below)
OTHERS = {"seq2seq_rnn": ["experiment=seq2seq_reverse", "data.min_len=5", "data.max_len=12"],
          "seq2seq_transformer": ["experiment=transformer_dates"],
          "hmm": ["experiment=hmm_seqmnist", "model.num_states=4"],
          "rbm": ["experiment=rbm_mnist", "model.hidden=32", "model.sample_steps=5", "model.persistent=true"],
          "dbn": ["experiment=dbn_mnist", "model.hidden_sizes=[32]", "model.pretrain_epochs=1", "trainer.max_epochs=2"],
          "multitask": ["experiment=multitask_mnist_fashion", "model.weighting=uncertainty"],
          "transfer": ["experiment=transfer_fashion", "data.labels_per_class=20"]}
SHRINK = {"vae": ["model.iw_samples=20", "model.quality_samples=200"],
          "gan": ["model.val_samples=200", "model.test_samples=200", "trainer.limit_train_batches=5"]}
METRIC = {"classifier": "test/acc", "vae": "test/nelbo", "gan": "test/fid", "seq2seq_rnn": "test/seq_acc",
          "seq2seq_transformer": "test/seq_acc", "hmm": "test/loglik", "rbm": "test/pll", "dbn": "test/acc",
          "multitask": "test/acc", "transfer": "test/acc"}
RL_BASE = ["logger=csv", "trainer.enable_model_summary=false", "~callbacks.model_summary", "agent.eval_episodes=2",
           "agent.video=false", "callbacks.progress_bar.plain=true"]
RL = [*RL_BASE, *ON_DEVICE]
AGENTS = {
    "ppo_mlp": ["experiment=ppo_cartpole", "agent.total_timesteps=1024", "agent.eval_freq=512",
                "env.num_envs=2", "agent.num_steps=128", "agent.batch_size=64", "agent.update_epochs=2"],
    "ppo_nature_cnn": ["experiment=ppo_breakout", "agent.total_timesteps=1024", "agent.eval_freq=512",
                       "env.num_envs=2", "agent.num_steps=128", "agent.batch_size=64", "agent.update_epochs=1",
                       "env.max_episode_steps=200"],
    "dqn": ["experiment=dqn_cartpole", "agent.total_timesteps=1024", "agent.eval_freq=512",
            "agent.learning_starts=128", "agent.buffer_size=1000", "agent.train_freq=4", "agent.gradient_steps=1"],
    "sac": ["experiment=sac_pendulum", "agent.total_timesteps=1024", "agent.eval_freq=512",
            "agent.learning_starts=64", "agent.buffer_size=1000", "agent.batch_size=16", "env.max_episode_steps=60"],
}


def kind(family: str) -> str:
    if family in OTHERS:
        return family
    return "gan" if family in ("gan", "wgan_gp", "cgan") else "vae" if "vae" in family else "classifier"


def assert_on_device(stages: tuple[str, ...]) -> None:
    seen = {where for where, _, _ in DeviceProbe.records}
    assert set(stages) <= seen, f"the probe saw {seen}, not {stages}"
    for where, device, left_behind in DeviceProbe.records:
        assert device == DEVICE, f"{where}: the module ran on {device}, not {DEVICE}"
        assert left_behind == [], f"{where}: tensors not on {DEVICE}: {left_behind[:5]}"


def data_model_run(experiment: str, family: str, tmp_path: Path, data_dir: Path, extra: list[str] = ()) -> dict:
    cfg = make_cfg([f"experiment={experiment}", *ON_DEVICE, *SHRINK.get(kind(family), []), *extra], tmp_path, data_dir)
    metrics = run(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert not [k for k in ckpt["state_dict"] if k.startswith("quality.")]  # the referee is in no checkpoint
    return metrics


@pytest.mark.parametrize("family", [*SUPERVISED, *GENERATIVE])
def test_every_data_model_family_runs_on_the_device(family, tmp_path, data_dir):
    experiment = {**SUPERVISED, **GENERATIVE}[family]
    metrics = data_model_run(experiment, family, tmp_path, data_dir)
    assert_on_device(("train", "validation", "test"))
    key = METRIC[kind(family)]
    assert math.isfinite(metrics[key]), metrics


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory, data_dir) -> Path:
    """transfer_fashion's source: a shrunk cnn_mnist run on the device."""
    cfg = make_cfg(["experiment=cnn_mnist", "test=false", *ON_DEVICE], tmp_path_factory.mktemp("source"), data_dir)
    run(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("family", OTHERS)
def test_every_other_family_runs_on_the_device(family, tmp_path, data_dir, request):
    extra = [f"model.init_from={request.getfixturevalue('source_checkpoint')}"] if family == "transfer" else []
    metrics = data_model_run(OTHERS[family][0].split("=", 1)[1], family, tmp_path, data_dir,
                             [*OTHERS[family][1:], *extra])
    assert_on_device(("train", "validation", "test"))
    assert math.isfinite(metrics[METRIC[family]]), metrics


@pytest.mark.parametrize("agent", AGENTS)
def test_our_agents_run_on_the_device(agent, tmp_path):
    metrics = run(make_cfg([*AGENTS[agent], *RL], tmp_path, None, smoke=False))
    assert_on_device(("train",))
    assert math.isfinite(metrics["eval/return"]) and metrics["time/sps"] > 0


@pytest.mark.parametrize("agent", ["sb3_ppo", "sb3_dqn"])
def test_sb3_baselines_train_on_the_device(agent, tmp_path, monkeypatch):
    from stable_baselines3.common.base_class import BaseAlgorithm

    devices: list[str] = []
    setup_learn = BaseAlgorithm._setup_learn  # what every SB3 algorithm's learn() calls first

    def spy(self, *args, **kwargs):
        devices.append(self.device.type)
        return setup_learn(self, *args, **kwargs)

    monkeypatch.setattr(BaseAlgorithm, "_setup_learn", spy)
    base = AGENTS["ppo_mlp" if agent == "sb3_ppo" else "dqn"][:3]  # experiment and budget only
    metrics = run(make_cfg([*base, f"agent={agent}", *RL_BASE, f"trainer.accelerator={ACCELERATOR}"], tmp_path, None,
                           smoke=False))
    assert devices == [DEVICE] and math.isfinite(metrics["eval/return"])


PRECISIONS = [pytest.param("16-mixed", marks=needs_cuda), "bf16-mixed"]
LEARN = ["trainer.max_epochs=3", "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
         "trainer.limit_test_batches=null"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", ["classifier", "vae", "gan"])
def test_mixed_precision_learns(family, precision, tmp_path, data_dir):
    experiment = {"classifier": "cnn_mnist", "vae": "vae_mnist", "gan": "gan_mnist"}[family]
    metrics = data_model_run(experiment, family, tmp_path, data_dir,
                             [f"trainer.precision={precision}", *(LEARN if family != "gan" else [])])
    assert_on_device(("train", "test"))
    if family == "classifier":
        assert metrics["test/acc"] > 0.5  # 3 epochs of the synthetic blocks; chance is 0.1
    elif family == "vae":  # below the untrained model's ~543 nats (784 pixels x log 2)
        assert metrics["test/nelbo"] < 400
    else:
        assert math.isfinite(metrics["test/fid"]) and math.isfinite(metrics["train/g_loss"])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ppo_mixed_precision_learns_cartpole(precision, tmp_path):
    cfg = make_cfg(["experiment=ppo_cartpole", "agent.total_timesteps=30000", "agent.eval_freq=10000",
                    f"trainer.precision={precision}", *RL, "agent.eval_episodes=10"], tmp_path, None, smoke=False)
    metrics = run(cfg)
    assert_on_device(("train",))
    assert metrics["eval/return"] >= 150  # random play scores ~22; 32-true scores ~470 here


def lab(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lab", *args, f"paths.log_dir={tmp_path}/logs"]
    env = dict(os.environ, WANDB_MODE="offline")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


DDP_RUNS = {"cnn_mnist": [*SMOKE, "trainer.max_epochs=2"],
            "gan_mnist": [*SMOKE, *SHRINK["gan"]],
            "ppo_cartpole": [*RL_BASE, *AGENTS["ppo_mlp"][1:]]}  # (subprocesses: no probe, tests/ is not importable)


def ddp_case(devices: str):
    return pytest.param(devices, marks=pytest.mark.skipif(
        devices == "-1" and torch.cuda.device_count() < 2, reason="needs two or more CUDA devices"))


@pytest.mark.parametrize("devices", ["1", ddp_case("-1")])
@pytest.mark.parametrize("experiment", DDP_RUNS)
def test_ddp(experiment, devices, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    args = [f"experiment={experiment}", *DDP_RUNS[experiment], f"paths.data_dir={data_dir}", "trainer=ddp",
            f"trainer.accelerator={ACCELERATOR}", f"trainer.devices={devices}", f"hydra.run.dir={run_dir}"]
    proc = lab(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Final metrics:") == 1  # rank zero only
    assert f"distributed_backend={'nccl' if DEVICE == 'cuda' else 'gloo'}" in proc.stdout + proc.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["metrics"]


def test_optuna_sweep_of_two_trials_on_the_device(tmp_path, data_dir):
    import optuna

    sweep = tmp_path / "sweep"
    proc = lab(["-m", "experiment=cnn_mnist", "hparams_search=cnn_mnist_optuna", "hydra.sweeper.n_trials=2",
                f"hydra.sweep.dir={sweep}", *SMOKE, f"paths.data_dir={data_dir}",
                f"trainer.accelerator={ACCELERATOR}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="cnn_mnist", storage=f"sqlite:///{sweep}/optuna.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(0.0 <= t.value <= 1.0 for t in done)
