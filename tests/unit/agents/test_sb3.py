"""The SB3 baselines: the lab's envs for training and evaluation alike, and no key silently ignored."""

import functools
from types import SimpleNamespace

import pytest
import torch

from agents.common.envs import EnvConfig
from agents.sb3 import SB3DQN, SB3PPO
from agents.sb3.base import _ToLabLoggers

ADAM = functools.partial(torch.optim.Adam)


def test_training_and_evaluation_envs_are_the_same_envs():
    # frame stacking on a non-Atari env stacks in training too (it used to stack for evaluation only)
    agent = SB3PPO(EnvConfig("CartPole-v1", num_envs=2, frame_stack=3), ADAM, num_steps=8, batch_size=8)
    venv = agent.make_vec_env()
    eval_env = agent.make_eval_env(2)
    try:
        assert venv.observation_space.shape == eval_env.single_observation_space.shape == (3, 4)
        assert venv.num_envs == 2 and venv.reset().shape == (2, 3, 4)
    finally:
        venv.close()
        eval_env.close()


def test_log_interval_spaces_the_logged_steps():
    seen = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: seen.append((step, metrics)))
    writer = _ToLabLoggers([logger], log_interval=256)
    for step in (64, 128, 320, 400, 640):
        writer.write({"rollout/ep_rew_mean": 1.0, "train/entropy_loss": -0.5}, {}, step=step)
    assert [s for s, _ in seen] == [64, 320, 640]
    assert seen[0][1] == {"rollout/ep_return": 1.0, "train/entropy": 0.5}  # the lab's names


def test_save_replay_buffer_writes_the_buffer_beside_the_checkpoint(tmp_path):
    agent = SB3DQN(EnvConfig("CartPole-v1"), ADAM, save_replay_buffer=True)
    saved = []
    agent.after_learn(SimpleNamespace(save_replay_buffer=saved.append), tmp_path)
    assert saved == [tmp_path / "last_replay_buffer.pkl"]


@pytest.mark.parametrize(("key", "value"), [("per_alpha", 0.7), ("per_beta", 0.5), ("dueling", True),
                                            ("prioritized", True)])
def test_dqn_options_sb3_lacks_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"agent.{key}={value!r}: Stable-Baselines3's DQN has no such option"):
        SB3DQN(EnvConfig("CartPole-v1"), ADAM, **{key: value})
