"""SAC's networks: a squashed Gaussian actor and twin Q critics (SB3's SAC MlpPolicy, default initialization)."""

from __future__ import annotations

import torch
from torch import nn

from agents.common.nets import activation, mlp, twin_layers
from agents.sac.maths import LOG_STD_MAX, LOG_STD_MIN, sample_squashed_gaussian


class SquashedGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mean(s), std(s)^2)): an MLP body and one linear head for the mean and the log std
    (clamped to [-20, 2] like SB3's), both state-dependent. Actions in [-1, 1]^action_dim."""

    def __init__(self, obs_dim: int, action_dim: int, net_arch: list[int], activation: str) -> None:
        super().__init__()
        self.body, width = mlp(obs_dim, list(net_arch), activation)
        # mean and log std side by side: one matmul (SB3's two nn.Linear heads, the same initialization)
        self.head = nn.Linear(width, 2 * action_dim)
        self.action_dim = action_dim

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, obs) -> (B, d) twice
        mean, log_std = self.head(self.body(obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, log pi(a|s)), reparameterized: gradients reach the actor through both."""
        mean, log_std = self(obs)
        return sample_squashed_gaussian(mean, log_std, torch.randn_like(mean))

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions only (no log-probability): tanh(mean), or a sample."""
        mean, log_std = self(obs)
        if deterministic:
            return torch.tanh(mean)
        return torch.tanh(mean + torch.exp(log_std) * torch.randn_like(mean))


class TwinQ(nn.Module):
    """Q1(s, a) and Q2(s, a): two MLPs on [s, a] (SB3's ContinuousCritic with n_critics=2), computed together as
    batched matmuls of stacked weights, half the kernels of two nn.Sequential. Layer i of critic k is
    `h @ weights[i][k] + biases[i][k]`: weights are (2, in, out), the transpose of nn.Linear's, each critic
    initialized like nn.Linear's default. Activation after every layer but the last (a width-1 output)."""

    def __init__(self, obs_dim: int, action_dim: int, net_arch: list[int], activation_name: str) -> None:
        super().__init__()
        self.act = activation(activation_name)
        self.weights, self.biases = twin_layers([obs_dim + action_dim, *net_arch, 1])

    def forward(self, obs: torch.Tensor, actions: torch.Tensor,
                detach_params: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q1, Q2), each (B,). `detach_params`: the critics' weights as constants, so a backward pass (the actor's
        loss) computes gradients for the inputs only, not the (unused) weight gradients of both critics."""
        x = torch.cat([obs, actions], dim=-1)
        h = x.expand(2, *x.shape)  # (2, B, in): a view, both critics read the same input
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if detach_params:
                w, b = w.detach(), b.detach()
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.act(h)
        return h[0, :, 0], h[1, :, 0]

    def critic_weight(self, layer: int, critic: int) -> torch.Tensor:
        """(out, in) weight of one critic's layer, as nn.Linear holds it (a view)."""
        return self.weights[layer][critic].T

    def critic_bias(self, layer: int, critic: int) -> torch.Tensor:
        return self.biases[layer][critic, 0]
