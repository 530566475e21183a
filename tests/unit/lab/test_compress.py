"""lab.compression: magnitude pruning's known answers on every prunable kind of layer, and the settings' checks."""

import pytest
import torch
from torch import nn

from lab.compression.pruning import (
    check_prune_settings,
    global_magnitude,
    make_permanent,
    prunable,
    weight_sparsity,
)
from lab.compression.quantization import check_export_settings, resolve_quantization


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):  # (B, 3, T)
        h, _ = self.rnn(self.conv(x).transpose(1, 2))
        return self.head(h[:, -1])


def test_global_magnitude_removes_the_smallest_weights_of_all_layers_together_and_for_good():
    torch.manual_seed(0)
    net = Net()
    weights = torch.cat([getattr(m, n).detach().abs().flatten() for m, n in prunable(net)])
    threshold = weights.sort().values[int(0.6 * len(weights)) - 1]
    global_magnitude(net, 0.6)
    make_permanent(net)
    assert weight_sparsity(net) == pytest.approx(0.6, abs=1 / len(weights))
    assert not any(k.endswith(("_orig", "_mask")) for k in net.state_dict())  # plain weights again
    for m, n in prunable(net):  # what is left is exactly what was above the global threshold
        w = getattr(m, n)
        assert isinstance(w, nn.Parameter) and bool((w.abs() > threshold).eq(w != 0).all())
    assert {n for m, n in prunable(net) if m is net.rnn} == {"weight_ih_l0", "weight_hh_l0"}
    out = net(torch.randn(2, 3, 6))  # the LSTM runs on its pruned weights
    assert out.shape == (2, 2)


def test_settings_are_checked_and_auto_quantization_follows_the_layers():
    check_prune_settings([0, 0.5], [0.25], 1)
    check_export_settings("auto")
    with pytest.raises(ValueError, match=r"compress.channel_ratios=\[1\]: 1 is outside \[0, 1\)"):
        check_prune_settings([], [1], 1)
    with pytest.raises(ValueError, match="compress.finetune_epochs=-1 must be an integer >= 0"):
        check_prune_settings([], [], -1)
    with pytest.raises(ValueError, match="compress.quantization='int4' is not valid; valid choices: auto, static"):
        check_export_settings("int4")
    assert resolve_quantization(Net(), "static") == "dynamic"  # recurrent layers: dynamic only
    assert resolve_quantization(nn.Sequential(nn.Conv2d(1, 2, 3)), "auto") == "static"
    assert resolve_quantization(nn.Sequential(nn.Linear(2, 2)), "auto") == "dynamic"
