"""Weight initialization of the backbones: one function, `initialize`, for the `init` key of every backbone."""

from __future__ import annotations

import torch
from torch import nn

from lab.checks import check_choice

INITS = ("default", "xavier", "kaiming", "orthogonal")

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _fill(weight: torch.Tensor, scheme: str) -> None:
    """One weight matrix (or conv kernel) by `scheme`: xavier = Glorot-uniform, U(-a, a) with
    a = sqrt(6 / (fan_in + fan_out)); kaiming = He-normal for ReLU, N(0, 2 / fan_in); orthogonal = a
    (semi-)orthogonal matrix (rows orthonormal when it is square or wide)."""
    if scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
    else:
        nn.init.orthogonal_(weight)


@torch.no_grad()
def initialize(module: nn.Module, scheme: str, key: str = "model.backbone.init") -> nn.Module:
    """Re-initialize `module`'s weights in place by `scheme` (the value of config key `key`) and return it.

    default: PyTorch's own initialization of each layer, unchanged. xavier | kaiming | orthogonal: every
    weight of the Linear and Conv layers, of the recurrent layers (RNN/LSTM/GRU: input-to-hidden and
    hidden-to-hidden) and of attention's input projection; its biases are set to zero. A recurrent or attention
    matrix stacks several gates / projections (LSTM: 4, GRU: 3, attention: q, k, v): each block is initialized
    as the matrix it is, so an orthogonal hidden-to-hidden block W satisfies W W^T = I. Normalization layers,
    embeddings and learned positions keep their own initialization.
    """
    check_choice(key, scheme, INITS)
    if scheme == "default":
        return module
    for m in module.modules():
        if isinstance(m, (nn.Linear, *CONV)):
            _fill(m.weight, scheme)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
            for name, p in m.named_parameters():
                if name.startswith("weight_"):  # weight_ih_l{k}, weight_hh_l{k} (and _reverse); not LSTM projections
                    for block in p.chunk(gates, 0) if name.startswith(("weight_ih", "weight_hh")) else (p,):
                        _fill(block, scheme)
                elif name.startswith("bias_"):
                    nn.init.zeros_(p)
        elif isinstance(m, nn.MultiheadAttention):  # out_proj is a Linear, done above
            if m.in_proj_weight is not None:
                for block in m.in_proj_weight.chunk(3, 0):  # q, k, v stacked
                    _fill(block, scheme)
            else:  # keys / values of other sizes than the queries: a matrix each
                for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight):
                    _fill(w, scheme)
            if m.in_proj_bias is not None:
                nn.init.zeros_(m.in_proj_bias)
    return module
