"""SAC: known-answer tests of its maths (agents/sac/maths.py), its networks, bad input, and one update against
Stable-Baselines3's SAC.train on the same weights, batch and noise."""

import functools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from agents.common.envs import EnvConfig
from agents.sac import SAC
from agents.sac.maths import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    actor_loss,
    critic_loss,
    polyak_update,
    sample_squashed_gaussian,
    scale_action,
    soft_td_target,
    squashed_gaussian_log_prob,
    tanh_log_abs_det_jacobian,
    temperature_loss,
    unscale_action,
)
from agents.sac.module import check_sac_env, parse_ent_coef, parse_target_entropy
from agents.sac.nets import SquashedGaussianActor, TwinQ

ADAM = functools.partial(torch.optim.Adam)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # 0.9189385...


def pendulum_sac(**kwargs) -> SAC:
    agent = SAC(EnvConfig("Pendulum-v1"), ADAM, **kwargs)
    agent.build_networks()
    return agent


# ---- maths -------------------------------------------------------------------------------------------
def test_tanh_log_det_equals_the_naive_form_and_stays_finite_where_tanh_saturates():
    u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(tanh_log_abs_det_jacobian(u), torch.log(1 - torch.tanh(u) ** 2))
    big = torch.tensor([20.0, -20.0, 50.0])  # float32 tanh rounds to +-1 here: the naive form gives -inf
    assert torch.isinf(torch.log(1 - torch.tanh(big) ** 2)).all()
    # log(1 - tanh(u)^2) = log(4) - 2|u| - 2 log(1 + e^{-2|u|}) -> 2 (log 2 - |u|) for large |u|
    torch.testing.assert_close(tanh_log_abs_det_jacobian(big), 2 * (math.log(2) - big.abs()))


def test_squashed_log_prob_hand_computed():
    # mean 0, std 1. u = 0: log N(0) - log(1 - 0) = -0.5 log(2 pi) = -0.9189385 per dimension.
    zero = torch.zeros(1, 2)
    assert squashed_gaussian_log_prob(zero, zero, zero).item() == pytest.approx(-2 * 0.9189385, abs=1e-6)
    # u = 1: log N(1) = -0.5 - 0.9189385 = -1.4189385; tanh(1) = 0.7615942, 1 - tanh^2 = 0.4199743,
    # log(0.4199743) = -0.8675616; log pi = -1.4189385 + 0.8675616 = -0.5513769.
    one = torch.ones(1, 1)
    assert squashed_gaussian_log_prob(one, torch.zeros(1, 1), torch.zeros(1, 1)).item() == pytest.approx(
        -0.5513769, abs=1e-6)
    # mean 0.5, log std log(2), u = -1: z = -0.75, log N = -0.28125 - 0.6931472 - 0.9189385 = -1.8933357,
    # minus log(1 - tanh(-1)^2) (the same -0.8675616): -1.0257741
    got = squashed_gaussian_log_prob(torch.tensor([[-1.0]]), torch.tensor([[0.5]]), torch.tensor([[math.log(2)]]))
    assert got.item() == pytest.approx(-1.0257741, abs=1e-6)


def test_squashed_log_prob_matches_torch_distributions_normal_with_tanh_transform():
    torch.manual_seed(0)
    mean = torch.randn(64, 3, dtype=torch.float64)
    log_std = torch.rand(64, 3, dtype=torch.float64) * 2 - 1.5
    u = mean + log_std.exp() * torch.randn(64, 3, dtype=torch.float64)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()]).log_prob(torch.tanh(u))
    torch.testing.assert_close(squashed_gaussian_log_prob(u, mean, log_std), reference.sum(-1))


def test_reparameterized_sample_is_tanh_of_the_gaussian_sample_with_its_log_prob():
    torch.manual_seed(1)
    mean = torch.randn(32, 2, requires_grad=True)
    log_std = (torch.rand(32, 2) - 0.5).requires_grad_()
    noise = torch.randn(32, 2)
    action, logp = sample_squashed_gaussian(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(logp, squashed_gaussian_log_prob(u, mean, log_std))
    (action.sum() + logp.sum()).backward()  # gradients reach the distribution's parameters
    assert mean.grad.abs().sum() > 0 and log_std.grad.abs().sum() > 0


def test_soft_td_target_known_answer():
    # y = r + gamma (1 - terminated) (min(Q1', Q2') - alpha log pi'); gamma 0.99, alpha 0.5
    rewards = torch.tensor([1.0, 2.0, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    discounts = 0.99 * (1 - terminated)
    q1, q2 = torch.tensor([10.0, 5.0, 3.0]), torch.tensor([8.0, 7.0, 4.0])
    logp = torch.tensor([-1.0, 2.0, 0.5])
    y = soft_td_target(rewards, discounts, q1, q2, logp, 0.5)
    # 1 + 0.99 (8 + 0.5) = 9.415 ; 2 (terminated: no bootstrap) ; -1 + 0.99 (3 - 0.25) = 1.7225
    torch.testing.assert_close(y, torch.tensor([9.415, 2.0, 1.7225]))
    torch.testing.assert_close(soft_td_target(rewards, discounts, q1, q2, logp, torch.tensor([0.5])), y)


def test_actor_critic_and_temperature_losses_known_answers():
    logp = torch.tensor([-1.0, 2.0])
    q1, q2 = torch.tensor([10.0, 5.0]), torch.tensor([8.0, 7.0])
    # actor: mean(0.5 * logp - min(Q1, Q2)) = mean(-0.5 - 8, 1 - 5) = -6.25
    assert actor_loss(logp, q1, q2, 0.5).item() == pytest.approx(-6.25)
    # critics: 0.5 * (MSE(Q1, y) + MSE(Q2, y)) with y = (9, 6): 0.5 * ((1 + 1) / 2 + (1 + 1) / 2) = 1
    assert critic_loss(q1, q2, torch.tensor([9.0, 6.0])).item() == pytest.approx(1.0)
    # temperature: -mean(log_alpha (logp + target_entropy)), target -1: logp + target = (-2, 1), mean -0.5
    log_alpha = torch.tensor([math.log(0.5)], requires_grad=True)
    logp_g = logp.clone().requires_grad_()
    loss = temperature_loss(log_alpha, logp_g, -1.0)
    assert loss.item() == pytest.approx(math.log(0.5) * 0.5)  # -(log 0.5 * -0.5) = -0.3466
    loss.backward()
    # d loss / d log_alpha = -mean(logp + target) = 0.5 > 0: the entropy estimate -mean(logp) = -0.5 is above
    # the target -1, so gradient descent lowers alpha; the policy's log-probabilities get no gradient
    assert log_alpha.grad.item() == pytest.approx(0.5) and logp_g.grad is None


def test_polyak_update_known_answer():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([[4.0]])]
    source = [torch.tensor([1.0, 20.0]), torch.tensor([[2.0]])]
    polyak_update(target, source, 0.1)
    torch.testing.assert_close(target[0], torch.tensor([0.1, 11.0]))  # 0.9 * target + 0.1 * source
    torch.testing.assert_close(target[1], torch.tensor([[3.8]]))
    polyak_update(target, source, 1.0)  # tau = 1: a copy
    torch.testing.assert_close(target[0], source[0])
    with pytest.raises(ValueError, match="2 target tensors for 1 source"):
        polyak_update(target, source[:1], 0.5)


def test_action_rescaling_to_the_box_bounds_and_back():
    low, high = np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32)
    a = np.array([[-1.0, -1.0], [0.0, 0.5], [1.0, 1.0]], dtype=np.float32)
    env_a = unscale_action(a, low, high)
    np.testing.assert_allclose(env_a, [[-2.0, 0.0], [0.0, 7.5], [2.0, 10.0]])
    np.testing.assert_allclose(scale_action(env_a, low, high), a)


# ---- networks ----------------------------------------------------------------------------------------
def test_twin_q_is_two_independent_mlps_and_detach_params_leaves_the_weights_alone():
    torch.manual_seed(0)
    q = TwinQ(3, 2, [16, 8], "relu")
    obs, act = torch.randn(5, 3), torch.randn(5, 2).requires_grad_()
    q1, q2 = q(obs, act)
    x = torch.cat([obs, act], -1)
    for k, got in enumerate((q1, q2)):  # each critic as nn.Linear layers of its own weights
        h = x
        for i in range(3):
            h = torch.nn.functional.linear(h, q.critic_weight(i, k), q.critic_bias(i, k))
            h = torch.relu(h) if i < 2 else h
        torch.testing.assert_close(got, h[:, 0])
    assert not torch.allclose(q1, q2)  # independently initialized
    d1, d2 = q(obs, act, detach_params=True)
    torch.testing.assert_close(d1, q1)
    (d1 + d2).sum().backward()
    assert act.grad is not None and all(p.grad is None for p in q.parameters())


def test_actor_log_std_is_clamped_and_actions_stay_in_minus_one_one():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, [8], "relu")
    with torch.no_grad():
        actor.head.bias.copy_(torch.tensor([50.0, -50.0, 10.0, -40.0]))  # huge means, log stds beyond both limits
    mean, log_std = actor(torch.randn(4, 3))
    assert (log_std[:, 0] == LOG_STD_MAX).all() and (log_std[:, 1] == LOG_STD_MIN).all()
    for deterministic in (True, False):
        a = actor.act(torch.randn(100, 3), deterministic)
        assert a.shape == (100, 2) and (a.abs() <= 1).all()
    _, logp = actor.sample(torch.randn(100, 3))
    assert torch.isfinite(logp).all()  # saturated tanh: the stable log-det keeps log-probabilities finite


def test_predicted_actions_lie_within_the_env_bounds():
    agent = pendulum_sac(net_arch=(16,))
    np.testing.assert_array_equal(agent.action_low, [-2.0])
    np.testing.assert_array_equal(agent.action_high, [2.0])
    with torch.no_grad():
        agent.actor.head.bias.fill_(5.0)  # mean and log std large: actions pushed against the bound
    obs = np.random.default_rng(0).normal(scale=10, size=(256, 3)).astype(np.float32)
    for deterministic in (True, False):
        actions = agent.predict(obs, deterministic)
        assert actions.shape == (256, 1) and actions.dtype == np.float32
        assert (actions >= -2.0).all() and (actions <= 2.0).all() and actions.max() > 1.9


# ---- temperature and checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize(("ent_coef", "auto", "value"), [("auto", True, 1.0), ("auto_0.1", True, 0.1),
                                                         (0.2, False, 0.2), ("0.05", False, 0.05), (0, False, 0.0)])
def test_ent_coef_forms(ent_coef, auto, value):
    assert parse_ent_coef(ent_coef) == (auto, value)
    agent = pendulum_sac(ent_coef=ent_coef, net_arch=(8,))
    assert agent.ent_coef() == pytest.approx(value)
    assert len(agent.configure_optimizers()) == (3 if auto else 2)
    assert ("log_ent_coef" in agent.state_dict()) == auto


def test_target_entropy_auto_is_minus_the_action_dimension():
    assert parse_target_entropy("auto", 6) == -6.0 and parse_target_entropy(-0.5, 6) == -0.5
    assert pendulum_sac(net_arch=(8,)).target_entropy == -1.0


def test_checkpoint_round_trip_of_the_temperature_and_networks():
    agent = pendulum_sac(ent_coef="auto_0.1", net_arch=(8,))
    with torch.no_grad():
        agent.log_ent_coef.fill_(math.log(0.37))
    state = agent.state_dict()
    assert {"log_ent_coef", "actor.head.weight", "critic.weights.0", "critic_target.weights.0"} <= set(state)
    fresh = pendulum_sac(ent_coef="auto_0.1", net_arch=(8,))
    assert fresh.ent_coef() == pytest.approx(0.1)
    fresh.load_state_dict(state)
    assert fresh.ent_coef() == pytest.approx(0.37)
    for k, v in state.items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    agent.n_updates = 7
    assert agent.extra_state() == {"n_updates": 7}  # no replay buffer unless save_replay_buffer
    fresh.load_extra_state(agent.extra_state())
    assert fresh.n_updates == 7


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ent_coef": "foo"}, r"agent.ent_coef='foo' is not valid; valid choices: auto, auto_<initial value>"),
    ({"ent_coef": "auto_-1"}, r"agent.ent_coef='auto_-1' is not valid: the initial value after 'auto_' must be"),
    ({"ent_coef": -0.1}, r"agent.ent_coef=-0.1 is not valid"),
    ({"tau": 0.0}, r"agent.tau=0.0 is not valid: it must be in \(0, 1\]"),
    ({"tau": 1.5}, r"agent.tau=1.5 is not valid"),
    ({"gradient_steps": 0}, r"agent.gradient_steps=0 is not valid"),
    ({"train_freq": 0}, r"agent.train_freq=0 is not valid: it must be an integer >= 1"),
    ({"batch_size": 512, "buffer_size": 100}, r"agent.batch_size=512 is larger than agent.buffer_size=100"),
    ({"target_entropy": "high"}, r"agent.target_entropy='high' is not valid; valid choices: auto"),
    ({"learning_rate": 0.0}, r"agent.learning_rate=0.0 is not valid"),
    ({"activation": "relux"}, r"agent.activation='relux' is not valid; valid choices:"),
    ({"encoder": "cnn"}, r"agent.encoder='cnn' is not valid for agent=sac.*valid choices: auto, mlp"),
])
def test_bad_keys_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pendulum_sac(**kwargs)


def test_discrete_actions_are_refused_with_the_agents_that_take_them():
    agent = SAC(EnvConfig("CartPole-v1"), ADAM)
    with pytest.raises(ValueError, match=r"SAC needs a Box action space; env.id='CartPole-v1' has Discrete\(2\) "
                                         r"\(use agent=dqn or agent=ppo\)"):
        agent.check_env()


def test_identity_box_suits_sac():
    low, high = check_sac_env(EnvConfig("lab/IdentityBox-v0"))
    np.testing.assert_array_equal(low, [-1.0])
    np.testing.assert_array_equal(high, [1.0])


# ---- one update against Stable-Baselines3 ---------------------------------------------------------------
def test_one_update_matches_stable_baselines3_sac_train():
    """SB3's SAC and ours with the same weights, replay batch and noise (the same torch seed: both draw the
    policy's noise for s, then for s', in that order) make the same update of every network and of the
    temperature, three times over (the temperature, the critics, the actor, the target critics)."""
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    torch.manual_seed(0)
    sb3 = SB3SAC("MlpPolicy", gym.make("Pendulum-v1"), batch_size=8, learning_rate=1e-3, tau=0.05, seed=0,
                 device="cpu", policy_kwargs={"net_arch": [16, 16]})
    sb3.set_logger(configure(None, []))
    ours = pendulum_sac(batch_size=8, learning_rate=1e-3, tau=0.05, net_arch=(16, 16))
    with torch.no_grad():  # SB3's weights into ours
        a = sb3.actor
        for i in (0, 2):
            ours.actor.body[i].weight.copy_(a.latent_pi[i].weight)
            ours.actor.body[i].bias.copy_(a.latent_pi[i].bias)
        ours.actor.head.weight.copy_(torch.cat([a.mu.weight, a.log_std.weight]))
        ours.actor.head.bias.copy_(torch.cat([a.mu.bias, a.log_std.bias]))
        for theirs, mine in ((sb3.critic, ours.critic), (sb3.critic_target, ours.critic_target)):
            for k, q in enumerate((theirs.qf0, theirs.qf1)):
                for i, layer in enumerate((0, 2, 4)):
                    mine.weights[i][k].copy_(q[layer].weight.T)
                    mine.biases[i][k, 0].copy_(q[layer].bias)
    opts = ours.configure_optimizers()

    def plain_step(loss, opt):  # what optimizer_step_on does outside a Trainer (no clipping for SAC)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ours.optimizer_step_on = plain_step
    rng = np.random.default_rng(0)
    for step in range(3):
        obs, next_obs = (torch.as_tensor(rng.normal(size=(8, 3)), dtype=torch.float32) for _ in range(2))
        actions = torch.as_tensor(rng.uniform(-1, 1, size=(8, 1)), dtype=torch.float32)
        rewards = torch.as_tensor(rng.normal(size=8), dtype=torch.float32)
        terminated = torch.tensor([0, 0, 1, 0, 0, 0, 1, 0], dtype=torch.float32)
        batch = ReplayBufferSamples(obs, actions, next_obs, terminated[:, None], rewards[:, None])
        sb3.replay_buffer.sample = lambda *args, batch=batch, **kwargs: batch
        torch.manual_seed(100 + step)
        sb3.train(gradient_steps=1, batch_size=8)
        torch.manual_seed(100 + step)
        stats = ours.update({"obs": obs, "actions": actions, "returns": rewards, "discounts": 0.99 * (1 - terminated),
                             "next_obs": next_obs}, opts)
        logged = sb3.logger.name_to_value
        for i, key in enumerate(("train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss")):
            assert stats[i].item() == pytest.approx(logged[key], rel=1e-4, abs=1e-6), key
    # SB3 writes log(1 - tanh^2 + 1e-6) where ours is exact: the same to ~1e-6
    assert ours.log_ent_coef.item() == pytest.approx(sb3.log_ent_coef.item(), abs=1e-6)
    close = functools.partial(torch.testing.assert_close, rtol=1e-4, atol=1e-6)
    close(ours.actor.head.weight, torch.cat([sb3.actor.mu.weight, sb3.actor.log_std.weight]))
    close(ours.actor.body[0].weight, sb3.actor.latent_pi[0].weight)
    for theirs, mine in ((sb3.critic, ours.critic), (sb3.critic_target, ours.critic_target)):
        for k, q in enumerate((theirs.qf0, theirs.qf1)):
            for i, layer in enumerate((0, 2, 4)):
                close(mine.critic_weight(i, k), q[layer].weight)
    assert ours.n_updates == 3
