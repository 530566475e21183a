"""Policy and Q networks: shapes, and distributions that match torch.distributions."""

import math

import pytest
import torch
from gymnasium import spaces

from agents.dqn.nets import QNetwork
from agents.ppo.nets import ActorCritic


def test_categorical_log_prob_and_entropy_match_torch():
    net = ActorCritic((4,), spaces.Discrete(3), [16], "tanh", True, 0.0, "mlp")
    obs = torch.randn(5, 4)
    action, logp, value = net.act(obs)
    assert action.shape == (5,) and logp.shape == (5,) and value.shape == (5,)
    logits = net.pi_head(net.pi_body(obs))
    dist = torch.distributions.Categorical(logits=logits)
    lp, ent, v = net.evaluate_actions(obs, action)
    torch.testing.assert_close(lp, dist.log_prob(action))
    torch.testing.assert_close(ent, dist.entropy())
    torch.testing.assert_close(v, value)
    assert torch.equal(net.act(obs, deterministic=True)[0], logits.argmax(-1))


def test_gaussian_log_prob_and_entropy_match_torch():
    net = ActorCritic((3,), spaces.Box(-2, 2, (2,)), [16], "tanh", True, -0.5, "mlp")
    obs = torch.randn(6, 3)
    action, logp, _ = net.act(obs)
    mean = net.pi_head(net.pi_body(obs))
    dist = torch.distributions.Normal(mean, net.log_std.exp())
    torch.testing.assert_close(logp, dist.log_prob(action).sum(-1))
    _, ent, _ = net.evaluate_actions(obs, action)
    torch.testing.assert_close(ent, dist.entropy().sum(-1))
    assert net.log_std.exp()[0].item() == pytest.approx(math.exp(-0.5))


def test_nature_cnn_policy_on_frames():
    net = ActorCritic((4, 84, 84), spaces.Discrete(6), [], "relu", True, 0.0, "nature_cnn")
    action, _, value = net.act(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert action.shape == (2,) and value.shape == (2,)
    with pytest.raises(ValueError, match="nature_cnn"):
        ActorCritic((4,), spaces.Discrete(2), [8], "tanh", True, 0.0, "nature_cnn")


def test_dueling_q_network_centres_advantages():
    net = QNetwork((4,), 3, [32], "relu", "mlp", dueling=True)
    obs = torch.randn(7, 4)
    q = net(obs)
    assert q.shape == (7, 3)
    h = net.body(obs)
    torch.testing.assert_close(q.mean(-1, keepdim=True), net.value(h))  # mean over actions of Q = V
