"""Network pieces shared by the agents: MLPs, the Nature DQN CNN, SB3's orthogonal initialization."""

from __future__ import annotations

import math

import torch
from torch import nn

from lab.checks import activation_class


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1, backward grad (1 - y^2). The same function as torch.tanh (to 2e-7), but
    torch's CPU tanh kernel is slow: at (256, 128) it takes 81 us against 24 us this way, and 146 us against
    ~50 us forward and backward, which is most of a PPO minibatch step of two 64-64 towers."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """torch.tanh, faster on CPU (see _SigmoidTanh); torch's own kernel on other devices and for small
    inputs (a rollout step's batch), where one kernel launch costs less than three."""
    if x.device.type != "cpu" or x.numel() < 4096:
        return torch.tanh(x)
    return _SigmoidTanh.apply(x)


class Tanh(nn.Module):
    """nn.Tanh with the agents' faster CPU tanh."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh(x)


def activation(name: str) -> nn.Module:
    """The agents' activation module called `name` (agent.activation; lab.checks names the choices)."""
    cls = activation_class("agent.activation", name)
    return Tanh() if cls is nn.Tanh else cls()


def mlp(in_dim: int, hidden: list[int], act: str) -> tuple[nn.Sequential, int]:
    """Linear + activation layers; returns (module, output width)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation(act)]
        in_dim = width
    return nn.Sequential(*layers), in_dim


def twin_layers(dims: list[int]) -> tuple[nn.ParameterList, nn.ParameterList]:
    """Two stacks of linear layers of widths dims[0] -> dims[1] -> ... as stacked (2, in, out) weights and
    (2, 1, out) biases (layer i of stack k: `x @ weights[i][k] + biases[i][k]`), each initialized like
    nn.Linear's default."""
    weights, biases = nn.ParameterList(), nn.ParameterList()
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        bound = 1 / math.sqrt(d_in)
        weights.append(nn.Parameter(torch.empty(2, d_in, d_out).uniform_(-bound, bound)))
        biases.append(nn.Parameter(torch.empty(2, 1, d_out).uniform_(-bound, bound)))
    return weights, biases


class TwinMLP(nn.Module):
    """Two MLP towers of the same widths on the same input (SB3's separate policy and value networks),
    computed together as batched matmuls of stacked weights: half the kernels and optimizer tensors of two
    nn.Sequential towers, the same function. Measured on the 2-core CPU, two 64-64 tanh towers at batch 256,
    forward + backward: 588 us as two nn.Sequential, 321 us stacked (with the CPU tanh below). Layer i of
    tower k is `x @ weights[i][k] + biases[i][k]`: weights are (2, in, out), the transpose of nn.Linear's."""

    def __init__(self, in_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        self.act = activation(act)
        self.widths = list(hidden)
        dims = [in_dim, *hidden]
        self.out_dim = dims[-1]
        self.weights, self.biases = twin_layers(dims)

    def tower_weight(self, layer: int, tower: int) -> torch.Tensor:
        """(out, in) weight of one tower's layer, as nn.Linear holds it (a view)."""
        return self.weights[layer][tower].T

    def tower_bias(self, layer: int, tower: int) -> torch.Tensor:
        return self.biases[layer][tower, 0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, in) -> (B, out) twice
        if not self.widths:
            return x, x
        h = x.expand(2, *x.shape)  # (2, B, in): a view, both towers read the same input
        for w, b in zip(self.weights, self.biases, strict=True):
            h = self.act(torch.baddbmm(b, h, w))  # (2, B, h_i)
        return h[0], h[1]


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights, zero biases (SB3's ortho_init; gains sqrt(2) hidden, 0.01 policy, 1 value);
    a TwinMLP's towers each get their own orthogonal matrices, as two nn.Linear stacks would."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)
        elif isinstance(m, TwinMLP):
            with torch.no_grad():
                for w, b in zip(m.weights, m.biases, strict=True):
                    for tower in (0, 1):  # an (out, in) matrix as nn.Linear's, stored transposed
                        w[tower] = nn.init.orthogonal_(torch.empty(w.shape[2], w.shape[1]), gain=gain).T
                    b.zero_()


class NatureCNN(nn.Module):
    """Mnih et al. (2015) encoder: (B, C, H, W) uint8 frames -> (B, features); (B, 32, 20, 20), (B, 64, 9, 9),
    (B, 64, 7, 7) for Atari's 84x84. Images of at least 36x36."""

    def __init__(self, in_channels: int, features: int = 512, size: tuple[int, int] = (84, 84)) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():  # the flattened width for this image size, as SB3's NatureCNN measures it
            flat = self.conv(torch.zeros(1, in_channels, *size)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features
        orthogonal_init(self, math.sqrt(2))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(obs.float() / 255.0))


class SmallCNN(nn.Module):
    """For images smaller than the Nature CNN takes (under 36x36, e.g. MinAtar's 10x10 or a grid world):
    (B, C, H, W) -> 3x3 convolutions, (B, 32, H, W) then (B, 64, ceil(H/2), ceil(W/2)) -> (B, features)."""

    def __init__(self, in_channels: int, features: int = 256, size: tuple[int, int] = (10, 10)) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=1, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        flat = 64 * ((size[0] + 1) // 2) * ((size[1] + 1) // 2)
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features
        orthogonal_init(self, math.sqrt(2))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(obs.float() / 255.0))
