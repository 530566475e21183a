"""Policy and Q networks: shapes, and distributions that match torch.distributions."""

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from agents.common.nets import TwinMLP, orthogonal_init, tanh
from agents.dqn.nets import QNetwork
from agents.ppo.nets import ActorCritic


def box(n: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (n,), np.float32)


def test_categorical_log_prob_and_entropy_match_torch():
    net = ActorCritic(box(4), spaces.Discrete(3), [16], "tanh", True, 0.0, "mlp")
    obs = torch.randn(5, 4)
    action, logp, value = net.act(obs)
    assert action.shape == (5,) and logp.shape == (5,) and value.shape == (5,)
    logits = net.pi_head(net.features(obs)[0])
    dist = torch.distributions.Categorical(logits=logits)
    lp, ent, v = net.evaluate_actions(obs, action)
    torch.testing.assert_close(lp, dist.log_prob(action))
    torch.testing.assert_close(ent, dist.entropy())
    torch.testing.assert_close(v, value)
    assert torch.equal(net.act(obs, deterministic=True)[0], logits.argmax(-1))


def test_gaussian_log_prob_and_entropy_match_torch():
    net = ActorCritic(box(3), spaces.Box(-2, 2, (2,)), [16], "tanh", True, -0.5, "mlp")
    obs = torch.randn(6, 3)
    action, logp, _ = net.act(obs)
    mean = net.pi_head(net.features(obs)[0])
    dist = torch.distributions.Normal(mean, net.log_std.exp())
    torch.testing.assert_close(logp, dist.log_prob(action).sum(-1))
    _, ent, _ = net.evaluate_actions(obs, action)
    torch.testing.assert_close(ent, dist.entropy().sum(-1))
    assert net.log_std.exp()[0].item() == pytest.approx(math.exp(-0.5))


def test_nature_cnn_policy_on_frames():
    net = ActorCritic(spaces.Box(0, 255, (4, 84, 84), np.uint8), spaces.Discrete(6), [], "relu", True, 0.0,
                      "nature_cnn")
    action, _, value = net.act(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert action.shape == (2,) and value.shape == (2,)
    assert net.body is None and net.encoder.single_image  # one shared CNN, linear heads (SB3's CnnPolicy)
    with pytest.raises(ValueError, match="nature_cnn"):
        ActorCritic(box(4), spaces.Discrete(2), [8], "tanh", True, 0.0, "nature_cnn")


def test_dueling_q_network_centres_advantages():
    net = QNetwork(box(4), 3, [32], "relu", "mlp", dueling=True)
    obs = torch.randn(7, 4)
    q = net(obs)
    assert q.shape == (7, 3)
    h = net.body(net.encoder(obs))
    torch.testing.assert_close(q.mean(-1, keepdim=True), net.value(h))  # mean over actions of Q = V


def test_fast_tanh_is_tanh_with_its_gradient():
    x = torch.linspace(-20, 20, 4001, requires_grad=True)
    y = tanh(x)
    torch.testing.assert_close(y, torch.tanh(x), atol=3e-7, rtol=0)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(x))
    torch.testing.assert_close(g, 1 - torch.tanh(x.detach()) ** 2, atol=1e-6, rtol=0)
    x64 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh, (x64,))


def test_twin_mlp_is_two_separate_towers():
    """Each tower's output is that of an nn.Linear stack holding its slices of the stacked weights, and
    a tower's gradient flows only into its own weights."""
    twin = TwinMLP(5, [8, 6, 4], "tanh")
    orthogonal_init(twin, 2 ** 0.5)
    x = torch.randn(7, 5)
    outs = twin(x)
    for tower in (0, 1):
        layers = []
        for i, (d_in, d_out) in enumerate([(5, 8), (8, 6), (6, 4)]):
            lin = nn.Linear(d_in, d_out)
            lin.weight.data, lin.bias.data = twin.tower_weight(i, tower).clone(), twin.tower_bias(i, tower).clone()
            layers += [lin, nn.Tanh()]
        torch.testing.assert_close(outs[tower], nn.Sequential(*layers)(x), atol=1e-6, rtol=0)
    twin.zero_grad()
    outs[0].sum().backward()
    assert twin.weights[1].grad[0].abs().sum() > 0 and twin.weights[1].grad[1].abs().sum() == 0
    assert twin.weights[0].grad[0].abs().sum() > 0 and twin.weights[0].grad[1].abs().sum() == 0


def test_orthogonal_init_of_each_tower():
    twin = TwinMLP(4, [64, 64], "tanh")
    orthogonal_init(twin, 2 ** 0.5)
    for tower in (0, 1):
        w0 = twin.tower_weight(0, tower)  # (64, 4): orthonormal columns, times the gain
        torch.testing.assert_close(w0.T @ w0, 2 * torch.eye(4), atol=1e-5, rtol=0)
        w1 = twin.tower_weight(1, tower)
        torch.testing.assert_close(w1 @ w1.T, 2 * torch.eye(64), atol=1e-5, rtol=0)
    assert not torch.equal(twin.tower_weight(1, 0), twin.tower_weight(1, 1))
    assert all(b.abs().sum() == 0 for b in twin.biases)


def test_checkpoints_with_two_sequential_towers_still_load():
    """A state dict written before the towers were stacked (pi_body / vf_body nn.Sequential) loads into
    the stacked towers and gives the same policy and values."""
    torch.manual_seed(0)
    towers = {t: nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh()) for t in ("pi", "vf")}
    pi_head, vf_head = nn.Linear(16, 2), nn.Linear(16, 1)
    old = {f"{t}_body.{k}": v for t, m in towers.items() for k, v in m.state_dict().items()}
    old.update({f"pi_head.{k}": v for k, v in pi_head.state_dict().items()})
    old.update({f"vf_head.{k}": v for k, v in vf_head.state_dict().items()})
    net = ActorCritic(box(4), spaces.Discrete(2), [16, 16], "tanh", True, 0.0, "mlp")
    net.load_state_dict(old)
    obs = torch.randn(9, 4)
    torch.testing.assert_close(net.features(obs)[0], towers["pi"](obs), atol=1e-6, rtol=0)
    torch.testing.assert_close(net.value(obs), vf_head(towers["vf"](obs)).squeeze(-1), atol=1e-6, rtol=0)


def test_sampled_actions_follow_the_policy():
    """Inverse-CDF sampling in act(): action frequencies match softmax(logits) (chi-square, 60k draws)."""
    torch.manual_seed(0)
    net = ActorCritic(box(2), spaces.Discrete(4), [], "tanh", False, 0.0, "mlp")
    with torch.no_grad():
        net.pi_head.weight.zero_()
        net.pi_head.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    actions, logp, _ = net.act(torch.zeros(60_000, 2))
    p = torch.softmax(net.pi_head.bias, -1)
    counts = torch.bincount(actions, minlength=4).float()
    chi2 = ((counts - 60_000 * p) ** 2 / (60_000 * p)).sum().item()
    assert chi2 < 16.3  # 3 degrees of freedom, p = 0.001
    torch.testing.assert_close(logp, torch.log(p)[actions])


def test_multi_discrete_log_prob_and_entropy_match_torch():
    """One categorical per component: log-probs and entropies add (SB3's MultiCategoricalDistribution)."""
    torch.manual_seed(0)
    net = ActorCritic(box(3), spaces.MultiDiscrete([3, 2, 4]), [16], "tanh", True, 0.0, "mlp")
    obs = torch.randn(8, 3)
    action, logp, _ = net.act(obs)
    assert action.shape == (8, 3) and (action < torch.tensor([3, 2, 4])).all()
    logits = net.pi_head(net.features(obs)[0]).split([3, 2, 4], dim=-1)
    dists = [torch.distributions.Categorical(logits=lg) for lg in logits]
    torch.testing.assert_close(logp, sum(d.log_prob(action[:, i]) for i, d in enumerate(dists)))
    _, ent, _ = net.evaluate_actions(obs, action)
    torch.testing.assert_close(ent, sum(d.entropy() for d in dists))
    mode = net.act(obs, deterministic=True)[0]
    assert torch.equal(mode, torch.stack([lg.argmax(-1) for lg in logits], -1))


def test_multi_binary_log_prob_and_entropy_match_torch():
    torch.manual_seed(0)
    net = ActorCritic(box(3), spaces.MultiBinary(5), [16], "tanh", True, 0.0, "mlp")
    obs = torch.randn(8, 3)
    action, logp, _ = net.act(obs)
    assert action.shape == (8, 5) and set(action.unique().tolist()) <= {0.0, 1.0}
    logits = net.pi_head(net.features(obs)[0])
    dist = torch.distributions.Bernoulli(logits=logits)
    torch.testing.assert_close(logp, dist.log_prob(action).sum(-1))
    _, ent, _ = net.evaluate_actions(obs, action)
    torch.testing.assert_close(ent, dist.entropy().sum(-1))
    assert torch.equal(net.act(obs, deterministic=True)[0], (logits > 0).float())


def test_bernoulli_samples_follow_the_policy():
    torch.manual_seed(0)
    net = ActorCritic(box(2), spaces.MultiBinary(2), [], "tanh", False, 0.0, "mlp")
    with torch.no_grad():
        net.pi_head.weight.zero_()
        net.pi_head.bias.copy_(torch.tensor([-1.0, 2.0]))
    actions, _, _ = net.act(torch.zeros(40_000, 2))
    torch.testing.assert_close(actions.mean(0), torch.sigmoid(torch.tensor([-1.0, 2.0])), atol=0.01, rtol=0)


def test_ppo_refuses_action_spaces_it_cannot_take():
    with pytest.raises(ValueError, match=r"PPO takes Discrete, Box, MultiDiscrete, MultiBinary .* Tuple"):
        ActorCritic(box(2), spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))), [8], "tanh", True, 0.0, "auto")


def test_old_atari_checkpoints_load_into_the_encoder():
    """A state dict with the Nature CNN as `body` (before ObsEncoder) gives the same Q-values."""
    torch.manual_seed(0)
    frames = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    net = QNetwork(frames, 6, [], "relu", "nature_cnn", dueling=False)
    old = {k.replace("encoder.extractors.0.", "body."): v for k, v in net.state_dict().items()}
    fresh = QNetwork(frames, 6, [], "relu", "nature_cnn", dueling=False)
    fresh.load_state_dict(old)
    obs = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(fresh(obs), net(obs))
    policy = ActorCritic(frames, spaces.Discrete(6), [], "relu", True, 0.0, "nature_cnn")
    old = {k.replace("encoder.extractors.0.", "body."): v for k, v in policy.state_dict().items()}
    ActorCritic(frames, spaces.Discrete(6), [], "relu", True, 0.0, "nature_cnn").load_state_dict(old)
