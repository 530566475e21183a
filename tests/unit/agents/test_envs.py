"""Envs: config checks, same-step autoreset, episode statistics, normalization, evaluation."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.envs import EnvConfig, final_observations, find_wrapper, finished_episodes, make_env
from agents.common.evaluate import evaluate
from agents.common.wrappers import NormalizeObservation, NormalizeReward


def test_unknown_env_id_lists_close_matches():
    with pytest.raises(ValueError, match="CartPole-v1"):
        EnvConfig(id="CartPole-v9")


@pytest.mark.parametrize("n", [0, -2])
def test_num_envs_must_be_positive(n):
    with pytest.raises(ValueError, match="env.num_envs"):
        EnvConfig(id="CartPole-v1", num_envs=n)


def test_same_step_autoreset_gives_final_obs_and_episode_stats():
    env = make_env(EnvConfig(id="CartPole-v1", num_envs=2, max_episode_steps=5), seed=0)
    obs, _ = env.reset(seed=0)
    for _t in range(5):
        next_obs, _, term, trunc, infos = env.step(np.zeros(2, dtype=np.int64))
    assert (term | trunc).all()  # at most 5 steps
    real = final_observations(next_obs, infos, term | trunc)
    assert not np.allclose(real, next_obs)  # next_obs already holds the reset observations
    episodes = finished_episodes(infos)
    assert sorted(i for i, _, _ in episodes) == [0, 1]
    assert all(length == 5 and ret == 5.0 for _, ret, length in episodes)
    env.close()


def test_seeds_make_runs_repeatable():
    def first_obs(seed):
        env = make_env(EnvConfig(id="CartPole-v1", num_envs=3), seed=seed)
        obs, _ = env.reset(seed=seed)
        env.close()
        return obs
    np.testing.assert_array_equal(first_obs(1), first_obs(1))
    assert not np.allclose(first_obs(1), first_obs(2))
    assert len({tuple(o) for o in first_obs(1)}) == 3  # every sub-env has its own seed


def test_observation_normalization_covers_final_obs_and_round_trips():
    def run(normalize):
        env = make_env(EnvConfig(id="Pendulum-v1", num_envs=2, normalize_obs=normalize, normalize_reward=normalize,
                                 max_episode_steps=10), seed=0)
        env.reset(seed=0)
        for t in range(10):
            if normalize and t == 9:
                find_wrapper(env, NormalizeObservation).update = False  # the statistics the last step used
            obs, reward, term, trunc, infos = env.step(np.zeros((2, 1), dtype=np.float32))
        assert (term | trunc).all()
        return env, np.stack(list(infos["final_obs"])), reward

    raw_env, raw_final, raw_reward = run(False)
    env, final, reward = run(True)
    norm = find_wrapper(env, NormalizeObservation)
    np.testing.assert_allclose(final, norm.normalize(raw_final), rtol=1e-5)  # final obs normalized too
    assert final.dtype == np.float32 and not np.allclose(final, raw_final)
    assert not np.allclose(reward, raw_reward)  # scaled by the return std
    state = norm.state_dict()
    assert state["count"] > 20
    other = make_env(EnvConfig(id="Pendulum-v1", num_envs=2, normalize_obs=True), seed=1, training=False)
    other_norm = find_wrapper(other, NormalizeObservation)
    other_norm.load_state_dict(state)
    torch.testing.assert_close(other_norm.state_dict()["mean"], state["mean"])
    assert not other_norm.update and find_wrapper(other, NormalizeReward) is None  # evaluation: frozen, true rewards
    for e in (env, raw_env, other):
        e.close()


def test_atari_preprocessing_shapes():
    cfg = EnvConfig(id="ALE/Pong-v5", num_envs=1, atari=True, frame_stack=4)
    obs_space, action_space = cfg.spaces()
    assert obs_space.shape == (4, 84, 84) and obs_space.dtype == np.uint8
    assert isinstance(action_space, gym.spaces.Discrete)


def test_evaluate_splits_episodes_over_envs():
    env = make_env(EnvConfig(id="CartPole-v1", num_envs=3), seed=0, training=False)
    returns, lengths = evaluate(lambda obs, det: np.zeros(len(obs), dtype=np.int64), env, 7, seed=0)
    assert len(returns) == 7 and np.array_equal(returns, lengths)  # CartPole: +1 per step
    assert (returns < 20).all()  # always pushing left falls quickly
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(lambda obs, det: obs, env, 0)
    env.close()


def test_ddp_processes_merge_normalization_statistics_into_those_of_all_their_data():
    """Two 'processes' start from one checkpoint, each sees its own data, merge twice: the result is what
    one RunningMeanStd over all the data gives, and merging again without new data changes nothing."""
    from gymnasium.wrappers.utils import RunningMeanStd

    from agents.common.wrappers import merge_statistics

    rng = np.random.default_rng(0)
    envs = [make_env(EnvConfig(id="Pendulum-v1", num_envs=2, normalize_obs=True, normalize_reward=True), seed=s)
            for s in (0, 1)]
    norms = [find_wrapper(e, NormalizeObservation) for e in envs]
    start = rng.normal(3.0, 2.0, size=(50, 3))
    reference = RunningMeanStd(shape=(3,), dtype=np.float64)
    reference.update(start)
    for n in norms:  # both resume from the same checkpoint
        n.obs_rms.update(start)
        n.load_state_dict(n.state_dict())
    for _ in range(2):
        data = [rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 4), size=(int(rng.integers(20, 90)), 3))
                for _ in norms]
        for n, d in zip(norms, data, strict=True):
            n.obs_rms.update(d)
            reference.update(d)
        states = [n.state_dict() for n in norms]  # what all_gather collects
        for n in norms:
            n.merge(states)
        for n in norms:
            np.testing.assert_allclose(n.obs_rms.mean, reference.mean, rtol=1e-9)
            np.testing.assert_allclose(n.obs_rms.var, reference.var, rtol=1e-9)
            assert n.obs_rms.count == pytest.approx(reference.count)
    same = merge_statistics([norms[0].state_dict()] * 2, norms[0].state_dict())
    assert all(torch.allclose(same[k], norms[0].state_dict()[k]) for k in same)
    for e in envs:
        e.close()


def _physics(state: np.ndarray, action: int) -> tuple[np.ndarray, bool]:
    """One step of Gymnasium's single CartPoleEnv from `state`: the known answer."""
    single = gym.make("CartPole-v1").unwrapped
    single.reset(seed=0)
    single.state = np.array(state, dtype=np.float64)
    obs, _, terminated, _, _ = single.step(action)
    return obs, terminated


def test_vector_cartpole_resets_in_the_step_that_ends_an_episode():
    """env.vectorization=vector: termination and truncation as the sync mode gives them. The ending step
    returns reward 1, the physics' last observation in final_obs and a fresh first observation; the next
    step is a real transition of the new episode (reward 1, the action acted on), not Gymnasium's
    next-step dummy (reward 0, action ignored)."""
    env = make_env(EnvConfig(id="CartPole-v1", num_envs=3, vectorization="vector", max_episode_steps=4), seed=0)
    env.reset(seed=0)
    inner = env.unwrapped
    falling = [0.0, 0.0, 0.2, 2.0]  # sub-env 0 leaves the 12-degree band in this step: terminated
    inner.state[:, 0] = falling
    start = inner.state.copy()
    actions = np.array([1, 0, 1])
    obs, reward, term, trunc, infos = env.step(actions)
    expected, ended = _physics(falling, 1)
    assert ended and term.tolist() == [True, False, False] and not trunc.any()
    np.testing.assert_allclose(infos["final_obs"][0], expected, rtol=1e-6)
    np.testing.assert_allclose(final_observations(obs, infos, term | trunc)[0], expected, rtol=1e-6)
    assert np.abs(obs[0]).max() <= 0.05  # the new episode's first observation
    np.testing.assert_allclose(obs[1], _physics(start[:, 1], 0)[0], rtol=1e-6)
    assert reward.tolist() == [1.0, 1.0, 1.0]
    assert finished_episodes(infos) == [(0, 1.0, 1)]

    fresh = inner.state[:, 0].copy()
    obs, reward, term, trunc, infos = env.step(np.array([0, 1, 1]))  # a real step of sub-env 0's new episode
    assert reward.tolist() == [1.0, 1.0, 1.0] and not (term | trunc).any()
    np.testing.assert_allclose(obs[0], _physics(fresh, 0)[0], rtol=1e-6)

    for _ in range(2):  # sub-envs 1 and 2 reach max_episode_steps=4: truncated, 4 rewards each
        obs, reward, term, trunc, infos = env.step(np.array([0, 1, 0]))
    assert trunc.tolist() == [False, True, True] and not term[1:].any()
    assert finished_episodes(infos) == [(1, 4.0, 4), (2, 4.0, 4)]
    assert infos["_final_obs"].tolist() == [False, True, True]
    assert np.abs(obs[1:]).max() <= 0.05 and inner.steps.tolist() == [3, 0, 0]


def test_vector_mode_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="frame_stack"):
        EnvConfig(id="CartPole-v1", vectorization="vector", frame_stack=2)
    with pytest.raises(ValueError, match="no vector implementation"):
        EnvConfig(id="MountainCar-v0", vectorization="vector")
    with pytest.raises(ValueError, match="valid choices: sync, async, vector"):
        EnvConfig(id="CartPole-v1", vectorization="threads")


class NoRenderMode(gym.Env):
    """A user's env as they often write them: no __init__, so no render_mode argument."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


def test_an_env_without_render_mode_is_made_without_it_and_renders_no_video():
    gym.register("NoRenderMode-v0", entry_point=NoRenderMode, max_episode_steps=5)
    try:
        cfg = EnvConfig(id="NoRenderMode-v0", num_envs=2)
        assert cfg.spaces()[1] == gym.spaces.Discrete(2)  # made: gymnasium was not handed render_mode=None
        assert cfg.renders() is False
        assert EnvConfig(id="CartPole-v1", num_envs=1).renders() is True
    finally:
        gym.registry.pop("NoRenderMode-v0")


@pytest.mark.parametrize("agent", ["ppo", "sb3_ppo"])
def test_video_is_turned_off_with_a_warning_for_an_env_that_cannot_render(agent, tmp_path, caplog):
    from agents.common.runner import build_env_and_agent
    from helpers import make_cfg

    gym.register("NoRenderMode-v0", entry_point=NoRenderMode, max_episode_steps=5)
    try:
        cfg = make_cfg(["experiment=ppo_cartpole", f"agent={agent}", "env.id=NoRenderMode-v0", "agent.video=true"],
                       tmp_path, None, smoke=False)
        _, built = build_env_and_agent(cfg)
    finally:
        gym.registry.pop("NoRenderMode-v0")
    assert built.video is False
    assert "cannot render (its constructor takes no render_mode): no evaluation videos" in caplog.text


def test_the_old_env_kwargs_name_is_read_as_kwargs_with_a_warning():
    with pytest.warns(FutureWarning, match="env.env_kwargs is now env.kwargs"):
        cfg = EnvConfig("FrozenLake-v1", env_kwargs={"map_name": "8x8"}, kwargs={"is_slippery": False})
    assert cfg.kwargs == {"map_name": "8x8", "is_slippery": False} and cfg.spaces()[0].n == 64
