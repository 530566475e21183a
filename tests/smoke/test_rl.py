"""Every RL experiment through run(cfg) for a few hundred env steps; resume, eval mode, determinism, bad input."""

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from agents.dqn import DQN
from agents.ppo import PPO
from helpers import experiment_targets, experiments_with, make_cfg
from lab.errors import ConfigError
from lab.run import run

RL_EXPERIMENTS = experiments_with("agent", PPO, DQN)  # SAC's: tests/smoke/test_sac.py

COMMON = ["logger=csv", "trainer.accelerator=cpu", "trainer.enable_model_summary=false", "~callbacks.model_summary",
          "agent.total_timesteps=256", "agent.eval_freq=128", "agent.eval_episodes=2", "agent.video=false",
          "agent.log_interval=64", "env.max_episode_steps=60", "callbacks.progress_bar.plain=true"]
SHRINK = {  # by the agent's class
    "agents.ppo.PPO": ["env.num_envs=2", "agent.num_steps=32", "agent.batch_size=32", "agent.update_epochs=2"],
    "agents.dqn.DQN": ["env.num_envs=1", "agent.train_freq=4", "agent.gradient_steps=1", "agent.learning_starts=32",
            "agent.buffer_size=500", "agent.batch_size=16"],
}


def rl_cfg(experiment: str, tmp_path: Path, extra: list[str] = ()):
    agent = experiment_targets()[experiment]["agent"]
    return make_cfg([f"experiment={experiment}", *COMMON, *SHRINK[agent], *extra], tmp_path, None, smoke=False)


def metrics_rows(cfg) -> list[dict[str, str]]:
    rows = []
    for path in sorted(Path(cfg.paths.output_dir).glob("csv/*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


def test_every_rl_experiment_is_covered():
    assert {"dqn_cartpole", "ppo_cartpole", "ppo_acrobot", "dqn_lunarlander", "ppo_lunarlander", "ppo_pendulum",
            "ppo_halfcheetah", "dqn_pong", "ppo_breakout"} <= set(RL_EXPERIMENTS)


@pytest.mark.parametrize("experiment", RL_EXPERIMENTS)
def test_experiment_trains_evaluates_and_checkpoints(experiment, tmp_path):
    cfg = rl_cfg(experiment, tmp_path)
    metrics = run(cfg)
    assert "eval/return" in metrics and "eval/return_std" in metrics
    out = Path(cfg.paths.output_dir)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["agent_state"]["env_steps"] >= 256
    rows = metrics_rows(cfg)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and max(steps) >= 256  # env steps on the x-axis
    keys = {k for r in rows for k, v in r.items() if v}
    assert {"eval/return", "time/sps", "train/learning_rate"} <= keys
    if experiment_targets()[experiment]["agent"] == "agents.ppo.PPO":
        assert {"train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/pg_loss",
                "train/v_loss", "train/entropy"} <= keys
    else:
        assert {"train/loss", "train/q_values", "train/epsilon"} <= keys


@pytest.mark.parametrize("agent", ["sb3_ppo", "sb3_dqn"])
def test_sb3_baselines_run_under_the_same_config(agent, tmp_path):
    experiment = "ppo_cartpole" if agent == "sb3_ppo" else "dqn_cartpole"
    cfg = rl_cfg(experiment, tmp_path, [f"agent={agent}", "agent.video=true"])
    metrics = run(cfg)
    assert "eval/return" in metrics
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.zip").is_file() and list((out / "videos").glob("*.mp4"))
    keys = {k for r in metrics_rows(cfg) for k, v in r.items() if v}
    assert {"eval/return", "time/train_seconds", "rollout/ep_return"} <= keys


def test_resume_continues_counters_and_normalization(tmp_path):
    cfg = rl_cfg("ppo_pendulum", tmp_path)  # normalizes observations and rewards
    run(cfg)
    first = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["agent_state"]
    cfg2 = rl_cfg("ppo_pendulum", tmp_path, ["resume=true", "agent.total_timesteps=512"])
    run(cfg2)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["agent_state"]
    assert first["env_steps"] == 256 and last["env_steps"] == 512
    assert last["obs_rms"]["count"] > first["obs_rms"]["count"]  # statistics carried on, not restarted
    steps = [int(r["step"]) for r in metrics_rows(cfg)]
    assert max(steps) == 512


def test_normalization_statistics_restored_from_checkpoint(tmp_path):
    from agents.common.envs import find_wrapper
    from agents.common.wrappers import NormalizeObservation, NormalizeReward

    cfg = rl_cfg("ppo_pendulum", tmp_path)
    run(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    import hydra

    with open_dict(cfg):
        agent = hydra.utils.instantiate(cfg.agent, env=cfg.env, _convert_="all")
    agent.setup("fit")
    agent.build_networks()
    agent.on_load_checkpoint(ckpt)
    for key, cls in (("obs_rms", NormalizeObservation), ("return_rms", NormalizeReward)):
        restored = find_wrapper(agent.envs, cls).state_dict()
        for k in ("mean", "var", "count"):
            torch.testing.assert_close(restored[k], ckpt["agent_state"][key][k])
    assert agent.env_steps == ckpt["agent_state"]["env_steps"]
    agent.teardown("fit")


def test_eval_mode_reports_mean_and_std_and_writes_a_video(tmp_path, capsys):
    cfg = rl_cfg("dqn_cartpole", tmp_path)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    cfg_eval = rl_cfg("dqn_cartpole", tmp_path / "eval", ["mode=eval", f"ckpt_path={ckpt}", "agent.video=true",
                                                          "agent.eval_episodes=3"])
    metrics = run(cfg_eval)
    assert (f"Evaluation over 3 episodes: return {metrics['eval/return']:.2f} ± {metrics['eval/return_std']:.2f}"
            in capsys.readouterr().out)
    assert metrics["eval/return"] == metrics["eval/ep_len"]  # CartPole pays 1 per step: return = length
    assert list((Path(cfg_eval.paths.output_dir) / "videos").glob("*.mp4"))


def test_dqn_evaluates_with_exploration_after_the_training_envs_close(tmp_path):
    # eval_deterministic=false: epsilon-greedy evaluation, after teardown closed the training envs
    explore = ["agent.eval_deterministic=false", "agent.exploration_final_eps=1.0", "agent.exploration_initial_eps=1.0"]
    cfg = rl_cfg("dqn_cartpole", tmp_path, explore)
    metrics = run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    evaluated = run(rl_cfg("dqn_cartpole", tmp_path / "eval", ["mode=eval", f"ckpt_path={ckpt}", *explore]))
    # epsilon 1: uniformly random actions, whose CartPole episodes last about 22 steps (never the cap of 60)
    for m in (metrics, evaluated):
        assert 8 <= m["eval/return"] <= 45 and m["eval/return"] == m["eval/ep_len"]


@pytest.mark.parametrize("experiment", ["ppo_cartpole", "dqn_cartpole"])
def test_same_seed_same_first_losses(experiment, tmp_path):
    key = "train/pg_loss" if experiment_targets()[experiment]["agent"] == "agents.ppo.PPO" else "train/loss"
    losses = []
    for i in range(2):
        cfg = rl_cfg(experiment, tmp_path / str(i), ["seed=7"])
        run(cfg)
        losses.append([r[key] for r in metrics_rows(cfg) if r.get(key)][:3])
    assert losses[0] and losses[0] == losses[1]
    cfg = rl_cfg(experiment, tmp_path / "other", ["seed=8"])
    run(cfg)
    assert [r[key] for r in metrics_rows(cfg) if r.get(key)][:3] != losses[0]


@pytest.mark.parametrize(("overrides", "match"), [
    (["experiment=ppo_cartpole", "env.id=CartPole-v7"], r"env.id='CartPole-v7'.*close matches: CartPole-v1"),
    (["experiment=dqn_cartpole", "env=pendulum"], r"DQN needs a Discrete action space.*Pendulum-v1"),
    (["experiment=ppo_cartpole", "env.num_envs=0"], r"env.num_envs=0"),
    (["experiment=ppo_cartpole", "agent.batch_size=1024"], r"batch_size=1024 is larger than the rollout.*32 x 8 = 256"),
    (["experiment=ppo_cartpole", "agent.gae_lambda=1.5"], r"gae_lambda=1.5"),
    (["experiment=dqn_cartpole", "agent.train_freq=0"], r"agent.train_freq=0 is not valid: it must be an integer >= 1"),
    (["experiment=ppo_cartpole", "agent=sb3_ppo", "agent.eval_episodes=0"], r"agent.eval_episodes=0"),
    (["experiment=dqn_cartpole", "agent=sb3_dqn", "agent.dueling=true"], r"dueling=True.*Stable-Baselines3"),
    # nothing silently ignored: keys the run would not use
    (["experiment=ppo_cartpole", "trainer.max_epochs=3"], r"trainer.max_epochs=3 is not used by RL runs"),
    (["experiment=dqn_cartpole", "agent.per_alpha=0.7"], r"agent.per_alpha=0.7 .* only act with prioritized"),
    (["experiment=dqn_cartpole", "agent=sb3_dqn", "agent.per_beta=0.5"], r"per_beta=0.5.*Stable-Baselines3"),
    (["experiment=ppo_cartpole", "agent.log_std_init=-0.5"], r"log_std_init=-0.5 only acts on Gaussian policies"),
    (["experiment=ppo_cartpole", "agent=sb3_ppo", "resume=true"], r"resume=true.*SB3Runner"),
    (["experiment=ppo_cartpole", "env.id=my_missing_pkg:Foo-v0"], r"module 'my_missing_pkg' cannot be imported"),
])
def test_bad_input_fails_before_training(overrides, match, tmp_path):
    cfg = make_cfg(overrides + ["logger=csv"], tmp_path, None, smoke=False)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_dqn_checkpoint_carries_the_replay_buffer_when_asked(tmp_path):
    cfg = rl_cfg("dqn_cartpole", tmp_path, ["agent.save_replay_buffer=true"])
    run(cfg)
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["agent_state"]
    assert int(state["replay_buffer"]["pos"]) == 256 % 500 and state["vector_steps"] == 256
    cfg2 = rl_cfg("dqn_cartpole", tmp_path, ["agent.save_replay_buffer=true", "resume=true",
                                            "agent.total_timesteps=384"])
    run(cfg2)
    state2 = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["agent_state"]
    assert int(state2["replay_buffer"]["pos"]) == 384  # continued filling the restored buffer
    torch.testing.assert_close(state2["replay_buffer"]["obs"][:256], state["replay_buffer"]["obs"][:256])
    plain = rl_cfg("dqn_cartpole", tmp_path / "plain")
    run(plain)
    assert "replay_buffer" not in torch.load(Path(plain.paths.output_dir) / "checkpoints" / "last.ckpt",
                                             weights_only=False)["agent_state"]


def test_multirun_compares_ours_and_sb3_in_one_sweep(tmp_path):
    import os
    import subprocess
    import sys

    # trainer / callbacks settings are the lab's agents' only: SB3's loop would refuse them (next test)
    overrides = [o for o in COMMON + SHRINK["agents.ppo.PPO"] if not o.startswith(("~", "trainer.", "callbacks."))]
    cmd = [sys.executable, "-m", "lab", "-m", "experiment=ppo_cartpole", "agent=ppo,sb3_ppo", "seed=0",
           *overrides, f"hydra.sweep.dir={tmp_path}/sweep", f"paths.log_dir={tmp_path}/logs"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="offline"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("Final metrics:") == 2
    assert (tmp_path / "sweep" / "0" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "sweep" / "1" / "checkpoints" / "last.zip").is_file()
    # the sweep summary: both jobs, their overrides and eval/return, best first
    import csv as _csv

    with (tmp_path / "sweep" / "summary.csv").open() as f:
        rows = list(_csv.DictReader(f))
    assert sorted(r["overrides"].split()[1] for r in rows) == ["agent=ppo", "agent=sb3_ppo"]
    returns = [float(r["eval/return"]) for r in rows]
    assert returns == sorted(returns, reverse=True) and all(r["status"] == "ok" for r in rows)
    assert "| rank | job | overrides |" in (tmp_path / "sweep" / "summary.md").read_text()


def test_sb3_refuses_the_trainer_settings_it_would_ignore(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lab", "experiment=ppo_cartpole", "agent=sb3_ppo", "trainer.precision=bf16-mixed",
           "trainer.accelerator=cpu", "logger=csv", f"paths.log_dir={tmp_path}/logs"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # precision is refused by name; accelerator, which SB3 uses as its device, is not
    assert "error: trainer.precision=bf16-mixed:" in proc.stderr and "trainer.accelerator=cpu," not in proc.stderr
    assert not list((tmp_path / "logs").glob("**/checkpoints"))


def test_sb3_checkpoint_with_normalization_evaluates(tmp_path):
    cfg = rl_cfg("ppo_pendulum", tmp_path, ["agent=sb3_ppo"])  # VecNormalize: its statistics travel with the zip
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.zip"
    assert ckpt.with_suffix(".vecnormalize.pkl").is_file()
    metrics = run(rl_cfg("ppo_pendulum", tmp_path / "eval", ["agent=sb3_ppo", "mode=eval", f"ckpt_path={ckpt}"]))
    assert metrics["eval/return"] < 0  # Pendulum's returns are negative; the run evaluated real episodes
