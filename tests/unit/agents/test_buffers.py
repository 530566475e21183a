"""Buffers: shapes, sampling, n-step targets with known answers, prioritized replay, state round trip."""

import numpy as np
import pytest
import torch

from agents.common.buffers import ReplayBuffer, RolloutBuffer, n_step_targets

G = 0.9


def test_rollout_minibatches_cover_every_transition_once():
    buf = RolloutBuffer(num_steps=4, num_envs=3, obs_shape=(2,), action_shape=())
    buf.obs[:] = torch.arange(12, dtype=torch.float32).view(4, 3, 1).expand(4, 3, 2)
    seen = []
    for mb in buf.minibatches(5, torch.Generator().manual_seed(0)):
        assert mb["obs"].shape[1:] == (2,)
        assert set(mb) == {"obs", "actions", "logprobs", "values", "advantages", "returns"}
        seen += mb["obs"][:, 0].tolist()
    assert sorted(seen) == list(range(12))  # 5 + 5 + 2, nothing twice, nothing missing


def test_n_step_targets_known_answers():
    rewards = np.array([[1.0, 2.0, 3.0],   # no episode end: 1 + .9*2 + .81*3, bootstrap .9^3 from step 2
                        [1.0, 2.0, 3.0],   # terminated at step 1: 1 + .9*2, no bootstrap
                        [1.0, 2.0, 3.0],   # truncated at step 0: 1, bootstrap .9 from step 0's final obs
                        [1.0, 2.0, 3.0]])  # only 2 steps collected so far: 1 + .9*2, bootstrap .81 from step 1
    terminated = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    done = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    valid = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=bool)
    ret, disc, last = n_step_targets(rewards, terminated, done, valid, G)
    np.testing.assert_allclose(ret, [1 + G * 2 + G**2 * 3, 1 + G * 2, 1, 1 + G * 2], rtol=1e-6)
    np.testing.assert_allclose(disc, [G**3, 0.0, G, G**2], rtol=1e-6)
    np.testing.assert_array_equal(last, [2, 1, 0, 1])


def test_one_step_targets_are_plain_td():
    r = np.array([[2.0], [3.0]])
    ret, disc, last = n_step_targets(r, np.array([[False], [True]]), np.array([[False], [True]]),
                                     np.ones((2, 1), bool), G)
    np.testing.assert_allclose(ret, [2.0, 3.0])
    np.testing.assert_allclose(disc, [G, 0.0])


def _filled(n_step_env=False, prioritized=False):
    buf = ReplayBuffer(8, num_envs=2, obs_shape=(1,), obs_dtype=np.float32, prioritized=prioritized)
    for t in range(6):  # env 0 terminates at t = 2; env 1 never ends
        obs = np.array([[t], [100 + t]], dtype=np.float32)
        buf.add(obs, obs + 0.5, np.array([t % 2, 1]), np.array([1.0, 10.0]), np.array([t == 2, False]),
                np.array([False, False]))
    return buf


def test_replay_buffer_is_circular_and_samples_shapes():
    buf = _filled()
    assert buf.capacity == 4 and len(buf) == 8 and buf.full
    s = buf.sample(16, np.random.default_rng(0), gamma=G)
    assert s["obs"].shape == (16, 1) and s["next_obs"].shape == (16, 1) and s["actions"].shape == (16,)
    assert set(np.unique(s["obs"][s["obs"] < 100])) <= {2.0, 3.0, 4.0, 5.0}  # steps 0 and 1 were overwritten
    np.testing.assert_allclose(s["weights"], 1.0)


def test_replay_n_step_sample_from_the_buffer():
    buf = _filled()
    s = buf.sample(256, np.random.default_rng(1), gamma=G, n_step=3)
    for obs, ret, disc, nxt in zip(s["obs"][:, 0], s["returns"], s["discounts"], s["next_obs"][:, 0], strict=True):
        if obs >= 100:  # env 1: 10 per step, never ends; the window stops at the newest step (t = 5)
            k = min(3, 105 - int(obs) + 1)
            assert ret == pytest.approx(sum(10 * G**i for i in range(k)), rel=1e-6)
            assert disc == pytest.approx(G**k) and nxt == obs + k - 1 + 0.5
        elif obs == 2:  # env 0's terminal step: no bootstrap
            assert ret == pytest.approx(1.0) and disc == 0.0
        else:  # env 0 after its reset (t = 3, 4, 5)
            k = min(3, 5 - int(obs) + 1)
            assert ret == pytest.approx(sum(G**i for i in range(k)), rel=1e-6) and disc == pytest.approx(G**k)


def test_prioritized_replay_prefers_high_priority_and_weights_them_down():
    buf = _filled(prioritized=True)
    idx = np.arange(len(buf))
    td = np.full(len(buf), 0.01)
    td[3] = 10.0
    buf.update_priorities(idx, td)
    s = buf.sample(2000, np.random.default_rng(0), gamma=G, beta=1.0)
    share = np.mean(s["index"] == 3)
    p = (np.abs(td) + 1e-6) ** 0.6
    assert share == pytest.approx(p[3] / p.sum(), abs=0.03)
    assert s["weights"][s["index"] == 3].max() < s["weights"][s["index"] != 3].min()
    assert s["weights"].max() == pytest.approx(1.0)


def test_replay_state_round_trip():
    buf = _filled(prioritized=True)
    other = ReplayBuffer(8, num_envs=2, obs_shape=(1,), obs_dtype=np.float32, prioritized=True)
    other.load_state_dict(buf.state_dict())
    a = buf.sample(32, np.random.default_rng(3), gamma=G, n_step=2)
    b = other.sample(32, np.random.default_rng(3), gamma=G, n_step=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    small = ReplayBuffer(4, num_envs=2, obs_shape=(1,), obs_dtype=np.float32)
    with pytest.raises(ValueError, match="buffer_size"):
        small.load_state_dict(buf.state_dict())


@pytest.mark.parametrize("n_step", [1, 3])
def test_one_draw_of_many_batches_is_many_draws_of_one(n_step):
    """DQN draws an iteration's uniform minibatches at once: the same transitions, in the same order, as one
    draw per gradient step from the same random state."""
    buf = ReplayBuffer(buffer_size=50, num_envs=2, obs_shape=(3,), obs_dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(40):
        buf.add(rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.integers(0, 2, 2), rng.normal(size=2),
                rng.random(2) < 0.1, rng.random(2) < 0.05)
    once = buf.sample(4 * 8, np.random.default_rng(7), G, n_step)
    r = np.random.default_rng(7)
    steps = [buf.sample(8, r, G, n_step) for _ in range(4)]
    for k in once:
        np.testing.assert_array_equal(once[k], np.concatenate([s[k] for s in steps]))
