"""Known-answer tests for compute_gae, in the spirit of Stable-Baselines3's tests/test_gae.py."""

import pytest
import torch

from agents.common import compute_gae


def _zeros(t, n=1):
    return torch.zeros(t, n)


def test_constant_reward_no_termination_matches_geometric_sum():
    """r = 1 every step, V = 0 everywhere, lambda = 1: advantage_t = sum_k gamma^k over the rest."""
    T, gamma = 5, 0.9
    adv, ret = compute_gae(torch.ones(T, 1), _zeros(T), _zeros(T).bool(), _zeros(T).bool(), _zeros(T),
                           torch.zeros(1), gamma, 1.0)
    expected = torch.tensor([sum(gamma**k for k in range(T - t)) for t in range(T)]).unsqueeze(1)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected)


def test_lambda_zero_is_one_step_td():
    T, gamma = 4, 0.99
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    values = torch.tensor([[0.5], [0.25], [1.0], [2.0]])
    next_value = torch.tensor([3.0])
    adv, _ = compute_gae(rewards, values, _zeros(T).bool(), _zeros(T).bool(), _zeros(T), next_value, gamma, 0.0)
    v_next = torch.cat([values[1:], next_value.view(1, 1)])
    torch.testing.assert_close(adv, rewards + gamma * v_next - values)


def test_termination_does_not_bootstrap_and_truncation_does():
    """Two envs, identical except that at t = 1 env 0 terminates and env 1 is truncated by a time
    limit, with V(final obs) = 10. After the episode end (autoreset), t = 2 starts a new episode."""
    gamma, lam = 0.5, 1.0
    rewards = torch.ones(3, 2)
    values = torch.zeros(3, 2)
    terminated = torch.tensor([[False, False], [True, False], [False, False]])
    truncated = torch.tensor([[False, False], [False, True], [False, False]])
    final_values = torch.tensor([[0.0, 0.0], [123.0, 10.0], [0.0, 0.0]])  # 123 must be ignored (terminated)
    next_value = torch.tensor([4.0, 4.0])
    adv, _ = compute_gae(rewards, values, terminated, truncated, final_values, next_value, gamma, lam)
    # env 0: A1 = 1 ; A0 = 1 + 0.5 * 1 = 1.5 ; new episode: A2 = 1 + 0.5 * 4 = 3
    # env 1: A1 = 1 + 0.5 * 10 = 6 ; A0 = 1 + 0.5 * 6 = 4 ; A2 = 3
    torch.testing.assert_close(adv, torch.tensor([[1.5, 4.0], [1.0, 6.0], [3.0, 3.0]]))


def test_terminated_and_truncated_together_count_as_terminated():
    adv, _ = compute_gae(torch.ones(1, 1), _zeros(1), torch.ones(1, 1).bool(), torch.ones(1, 1).bool(),
                         torch.full((1, 1), 100.0), torch.tensor([50.0]), 0.9, 0.95)
    assert adv.item() == pytest.approx(1.0)


def test_matches_a_reference_loop_on_random_data():
    torch.manual_seed(0)
    T, N, gamma, lam = 16, 3, 0.98, 0.8
    r, v = torch.randn(T, N), torch.randn(T, N)
    term, trunc = torch.rand(T, N) < 0.1, torch.rand(T, N) < 0.1
    fv, nv = torch.randn(T, N), torch.randn(N)
    adv, ret = compute_gae(r, v, term, trunc, fv, nv, gamma, lam)
    for n in range(N):  # one env at a time, written the long way
        a = 0.0
        for t in reversed(range(T)):
            if term[t, n]:
                delta, cont = r[t, n] - v[t, n], 0.0
            elif trunc[t, n]:
                delta, cont = r[t, n] + gamma * fv[t, n] - v[t, n], 0.0
            else:
                nxt = nv[n] if t == T - 1 else v[t + 1, n]
                delta, cont = r[t, n] + gamma * nxt - v[t, n], 1.0
            a = delta + gamma * lam * cont * a
            assert adv[t, n].item() == pytest.approx(float(a), abs=1e-5)
    torch.testing.assert_close(ret, adv + v)


def test_gae_across_a_real_vector_env_autoreset():
    """CartPole in 2 sub-envs with a 12-step time limit: some episodes fall over
    (terminated), some hit the limit (truncated), and the vector env resets them in the same step. The
    advantages must match a per-env reference that bootstraps from the true final observation on
    truncation, from nothing on termination, and never crosses into the next episode."""
    import numpy as np

    from agents.common.envs import EnvConfig, final_observations, make_env

    gamma, lam, T = 0.9, 0.7, 40
    env = make_env(EnvConfig(id="CartPole-v1", num_envs=2, max_episode_steps=12), seed=3)
    obs, _ = env.reset(seed=3)

    def value(o):  # any fixed function of the observation will do
        return torch.as_tensor(np.asarray(o, dtype=np.float32) @ np.array([1.0, 0.5, -2.0, 0.25], dtype=np.float32))

    rewards, values, terminated, truncated, final_values, next_states = [], [], [], [], [], []
    for t in range(T):  # sub-env 0 balances by alternating (reaches the limit), sub-env 1 falls over
        next_obs, r, term, trunc, infos = env.step(np.array([t % 2, 0], dtype=np.int64))
        real_next = final_observations(next_obs, infos, term | trunc)
        rewards.append(torch.as_tensor(r, dtype=torch.float32))
        values.append(value(obs))
        terminated.append(torch.as_tensor(term))
        truncated.append(torch.as_tensor(trunc))
        final_values.append(value(real_next) * torch.as_tensor(trunc & ~term))
        next_states.append(real_next)
        obs = next_obs
    env.close()
    R, V, TE, TR, FV = (torch.stack(x) for x in (rewards, values, terminated, truncated, final_values))
    assert TE.any() and TR.any()  # both kinds of episode end occurred
    adv, _ = compute_gae(R, V, TE, TR, FV, value(obs), gamma, lam)

    # Reference: per sub-env, walk backwards; delta uses V(true next state) unless terminated.
    for i in range(2):
        last = 0.0
        for t in reversed(range(T)):
            v_next = 0.0 if TE[t, i] else float(value(next_states[t][i : i + 1])[0])
            delta = float(R[t, i]) + gamma * v_next - float(V[t, i])
            last = delta + (0.0 if (TE[t, i] or TR[t, i]) else gamma * lam * last)
            assert float(adv[t, i]) == pytest.approx(last, rel=1e-4, abs=1e-4)
