"""SAC's experiments through run(cfg) for a few hundred env steps: metrics, checkpoints, resume, SB3's SAC under
the same config, the direct optimizer step against Lightning's, DDP on 2 CPU processes, and one learning check."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.sac import SAC
from helpers import CountingHooks, experiments_with, make_cfg
from lab.run import run

SAC_EXPERIMENTS = experiments_with("agent", SAC)

COMMON = ["logger=csv", "trainer.accelerator=cpu", "trainer.enable_model_summary=false", "~callbacks.model_summary",
          "agent.total_timesteps=256", "agent.eval_freq=128", "agent.eval_episodes=2", "agent.video=false",
          "agent.log_interval=64", "env.max_episode_steps=60", "callbacks.progress_bar.plain=true"]
SHRINK = ["env.num_envs=1", "agent.learning_starts=32", "agent.buffer_size=1000", "agent.batch_size=16",
          "agent.net_arch=[32,32]"]
TRAIN_KEYS = {"train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss", "train/learning_rate"}


def sac_cfg(experiment: str, tmp_path: Path, extra: list[str] = ()):
    return make_cfg([f"experiment={experiment}", *COMMON, *SHRINK, *extra], tmp_path, None, smoke=False)


def metrics_rows(cfg) -> list[dict[str, str]]:
    rows = []
    for path in sorted(Path(cfg.paths.output_dir).glob("csv/*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


def last_ckpt(cfg) -> dict:
    return torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)


def test_both_presets_are_covered():
    assert set(SAC_EXPERIMENTS) >= {"sac_pendulum", "sac_halfcheetah"}


@pytest.mark.parametrize("experiment", SAC_EXPERIMENTS)
def test_experiment_trains_evaluates_and_checkpoints(experiment, tmp_path):
    cfg = sac_cfg(experiment, tmp_path)
    metrics = run(cfg)
    assert "eval/return" in metrics and "eval/return_std" in metrics and metrics["eval/ep_len"] == 60
    ckpt = last_ckpt(cfg)
    state = ckpt["agent_state"]
    # a gradient step after each env step once more than learning_starts were collected: steps 33..256
    assert state["env_steps"] == 256 and state["n_updates"] == 256 - 32
    assert ckpt["global_step"] == 3 * 224  # optimizer steps: temperature, critics, actor
    assert "log_ent_coef" in ckpt["state_dict"] and len(ckpt["optimizer_states"]) == 3
    assert "replay_buffer" not in state
    rows = metrics_rows(cfg)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and max(steps) == 256  # env steps on the x-axis
    keys = {k for r in rows for k, v in r.items() if v}
    assert {"eval/return", "time/sps", "rollout/ep_return", *TRAIN_KEYS} <= keys
    alphas = [float(r["train/ent_coef"]) for r in rows if r.get("train/ent_coef")]
    assert 0 < alphas[-1] < alphas[0] <= 1.0  # learnt from 1.0 (ent_coef=auto), falling at first as in SB3


def test_resume_continues_counters_and_the_replay_buffer(tmp_path):
    keep = ["agent.save_replay_buffer=true"]
    cfg = sac_cfg("sac_pendulum", tmp_path, keep)
    run(cfg)
    first = last_ckpt(cfg)
    run(sac_cfg("sac_pendulum", tmp_path, [*keep, "resume=true", "agent.total_timesteps=512"]))
    last = last_ckpt(cfg)
    assert first["agent_state"]["env_steps"] == 256 and last["agent_state"]["env_steps"] == 512
    assert last["agent_state"]["n_updates"] == 224 + 256  # every env step after the restart trained
    buf, buf2 = first["agent_state"]["replay_buffer"], last["agent_state"]["replay_buffer"]
    assert int(buf["pos"]) == 256 and int(buf2["pos"]) == 512  # the restored buffer filled on
    torch.testing.assert_close(buf2["obs"][:256], buf["obs"][:256])
    assert not torch.equal(last["state_dict"]["log_ent_coef"], first["state_dict"]["log_ent_coef"])
    assert max(int(r["step"]) for r in metrics_rows(cfg)) == 512


def test_eval_mode_evaluates_a_checkpoint_after_training(tmp_path, capsys):
    cfg = sac_cfg("sac_pendulum", tmp_path)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    metrics = run(sac_cfg("sac_pendulum", tmp_path / "eval", ["mode=eval", f"ckpt_path={ckpt}",
                                                             "agent.eval_episodes=3"]))
    assert (f"Evaluation over 3 episodes: return {metrics['eval/return']:.2f} ± {metrics['eval/return_std']:.2f}"
            in capsys.readouterr().out)
    assert metrics["eval/return"] < 0 and metrics["eval/ep_len"] == 60  # Pendulum's costs, 60-step episodes


def test_fixed_ent_coef_trains_without_a_temperature_optimizer(tmp_path):
    cfg = sac_cfg("sac_pendulum", tmp_path, ["agent.ent_coef=0.05"])
    run(cfg)
    ckpt = last_ckpt(cfg)
    assert "log_ent_coef" not in ckpt["state_dict"] and len(ckpt["optimizer_states"]) == 2
    assert ckpt["global_step"] == 2 * 224
    rows = metrics_rows(cfg)
    alphas = [float(r["train/ent_coef"]) for r in rows if r.get("train/ent_coef")]
    assert alphas and alphas == pytest.approx([0.05] * len(alphas))
    assert not any(r.get("train/ent_coef_loss") for r in rows)


def test_direct_optimizer_step_is_lightnings_step(tmp_path):
    """The three optimizers' direct steps give bit-identical weights, step counts and optimizer states to
    Lightning's path (taken when a callback hooks the steps)."""
    results = {}
    for path in ("direct", "lightning"):
        extra = ["+callbacks.count._target_=helpers.CountingHooks"] if path == "lightning" else []
        CountingHooks.calls, CountingHooks.threads = {}, []
        cfg = sac_cfg("sac_pendulum", tmp_path / path, extra)
        run(cfg)
        results[path] = last_ckpt(cfg)
        if path == "lightning":
            steps = results[path]["global_step"]
            assert CountingHooks.calls == {"backward": steps, "optimizer_step": steps}
    direct, lightning = results["direct"], results["lightning"]
    assert direct["global_step"] == lightning["global_step"] == 3 * 224
    for k, v in direct["state_dict"].items():
        assert torch.equal(v, lightning["state_dict"][k]), k
    for opt_d, opt_l in zip(direct["optimizer_states"], lightning["optimizer_states"], strict=True):
        assert all(torch.equal(opt_d["state"][i]["exp_avg_sq"], opt_l["state"][i]["exp_avg_sq"])
                   for i in opt_d["state"])


def test_sb3_sac_runs_under_the_same_config(tmp_path):
    cfg = sac_cfg("sac_pendulum", tmp_path, ["agent=sb3_sac"])
    metrics = run(cfg)
    assert metrics["eval/return"] < 0 and metrics["eval/ep_len"] == 60  # real Pendulum episodes
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.zip").is_file()
    keys = {k for r in metrics_rows(cfg) for k, v in r.items() if v}
    assert {"eval/return", "time/train_seconds", "rollout/ep_return", *TRAIN_KEYS} <= keys  # the same names


def test_sb3_sac_gets_the_translated_keys():
    import hydra

    cfg = make_cfg(["experiment=sac_pendulum", "agent=sb3_sac", "agent.ent_coef=auto_0.1", "agent.tau=0.01",
                    "agent.net_arch=[64,64]"], Path("/tmp/unused"), None, smoke=False)
    agent = hydra.utils.instantiate(cfg.agent, env=cfg.env, _convert_="all")
    k = agent.kwargs
    assert (k["learning_rate"], k["buffer_size"], k["learning_starts"], k["batch_size"], k["tau"], k["gamma"],
            k["train_freq"], k["gradient_steps"], k["ent_coef"], k["target_entropy"], k["target_update_interval"]) == (
        1e-3, 1_000_000, 100, 256, 0.01, 0.99, 1, 1, "auto_0.1", "auto", 1)
    assert k["policy_kwargs"]["net_arch"] == [64, 64] and k["policy_kwargs"]["activation_fn"] is torch.nn.ReLU


@pytest.mark.parametrize(("overrides", "match"), [
    (["experiment=sac_pendulum", "env=cartpole"], r"SAC needs a Box action space; env.id='CartPole-v1' has "
                                                   r"Discrete\(2\) \(use agent=dqn or agent=ppo\)"),
    (["experiment=sac_pendulum", "agent.ent_coef=foo"], r"agent.ent_coef='foo' is not valid; valid choices: auto"),
    (["experiment=sac_pendulum", "agent.tau=2"], r"agent.tau=2 is not valid: it must be in \(0, 1\]"),
    (["experiment=sac_pendulum", "agent=sb3_sac", "agent.ent_coef=foo"], r"agent.ent_coef='foo' is not valid"),
    (["experiment=sac_pendulum", "agent=sb3_sac", "env=cartpole"], r"SAC.*Box action spaces?.*CartPole-v1"),
])
def test_bad_input_fails_before_training(overrides, match, tmp_path):
    from lab.errors import ConfigError

    cfg = make_cfg(overrides + ["logger=csv"], tmp_path, None, smoke=False)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_ddp_two_processes_on_cpu(tmp_path):
    """Each process steps its own env; the budget counts env steps over both; gradients are averaged, so both
    processes end with the same actor, critics, target critics and temperature."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lab", "experiment=sac_pendulum", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "logger=csv", "~callbacks.model_summary", "agent.total_timesteps=1024",
           "agent.eval_freq=512", "agent.eval_episodes=2", "agent.video=false", "env.max_episode_steps=60",
           "callbacks.progress_bar.plain=true", "agent.learning_starts=64", "agent.buffer_size=1000",
           "agent.batch_size=16", "agent.net_arch=[32,32]", "+callbacks.weights._target_=helpers.SaveRankWeights",
           "+callbacks.weights.dirpath=${paths.output_dir}", f"hydra.run.dir={run_dir}",
           f"paths.log_dir={tmp_path}/logs"]
    tests_dir = str(Path(__file__).parents[1])
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Final metrics:") == 1  # printed by rank 0 only
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    # 512 vector steps per process, 2 env steps each over both; updates once env_steps > 64: from step 33 on
    assert ckpt["agent_state"]["env_steps"] == 1024 and ckpt["agent_state"]["n_updates"] == 512 - 32
    first, second = (torch.load(run_dir / f"weights_rank{r}.pt", weights_only=False)["state_dict"] for r in (0, 1))
    assert first.keys() == second.keys() and "log_ent_coef" in first
    for k in first:
        torch.testing.assert_close(first[k], second[k], rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.equal(first["log_ent_coef"], torch.zeros(1))  # it was learnt, identically on both


def test_learns_the_identity_box(tmp_path):
    """lab/IdentityBox-v0: reward 1 when the action is within 0.5 of the observation, 100 steps an episode.
    Random actions score about 44 (P(|a - s| <= 0.5) = 7/16 for uniform a, s); a learnt policy about 100."""
    cfg = make_cfg(["experiment=sac_pendulum", "env.id=lab/IdentityBox-v0", "logger=csv",
                    "trainer.accelerator=cpu", "~callbacks.model_summary", "callbacks.progress_bar.plain=true",
                    "agent.video=false", "agent.total_timesteps=2000", "agent.eval_freq=1000", "agent.eval_episodes=5",
                    "agent.learning_starts=200", "agent.net_arch=[64,64]", "agent.batch_size=64", "env.num_envs=1"],
                   tmp_path, None, smoke=False)
    metrics = run(cfg)
    assert metrics["eval/return"] >= 90 and metrics["eval/ep_len"] == 100
