"""Pruning and channel pruning where layers do not call their submodules: attention, recurrent nets."""

import torch
from torch import nn
from torch.nn.utils import prune

from lab.compression.pruning import channel_skip, global_magnitude, make_permanent, prunable


def test_a_pruned_attention_uses_its_masked_out_projection_after_every_step():
    """MultiheadAttention reads out_proj.weight without calling out_proj: the masked weight must still be
    recomputed from the trained original at every forward, as for any pruned layer."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 5, 8)
    assert {(type(m).__name__, n) for m, n in prunable(attention)} == {("MultiheadAttention", "in_proj_weight"),
                                                                       ("NonDynamicallyQuantizableLinear", "weight")}
    global_magnitude(attention, 0.5)
    opt = torch.optim.SGD(attention.parameters(), lr=0.5)
    for _ in range(2):  # without the re-applied mask, the second backward would reuse a freed graph
        opt.zero_grad()
        attention(x, x, x)[0].square().mean().backward()
        opt.step()
    out = attention(x, x, x)[0]
    # the same attention built by hand from the trained originals times their masks
    plain = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        plain.in_proj_weight.copy_(attention.in_proj_weight_orig * attention.in_proj_weight_mask)
        plain.in_proj_bias.copy_(attention.in_proj_bias)
        plain.out_proj.weight.copy_(attention.out_proj.weight_orig * attention.out_proj.weight_mask)
        plain.out_proj.bias.copy_(attention.out_proj.bias)
    torch.testing.assert_close(out, plain(x, x, x)[0])
    make_permanent(attention)
    assert not prune.is_pruned(attention) and not attention._forward_pre_hooks  # no hook left behind
    torch.testing.assert_close(attention(x, x, x)[0], plain(x, x, x)[0])


def test_channel_pruning_says_why_it_does_not_apply():
    assert channel_skip(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))) is None
    assert channel_skip(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))) is None
    assert "recurrent layers (GRU)" in channel_skip(nn.GRU(4, 8))
    encoder = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    assert "attention layers (MultiheadAttention)" in channel_skip(encoder)
