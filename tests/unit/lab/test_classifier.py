import functools
import math

import pytest
import torch

from lab.backbones import MLP
from lab.models import Classifier


def make(**kw):
    torch.manual_seed(0)
    return Classifier(MLP(in_features=12, hidden_sizes=(8,)), functools.partial(torch.optim.SGD, lr=0.1), **kw)


def test_forward_and_features():
    m = make(num_classes=3)
    x = torch.randn(5, 12)
    assert m(x).shape == (5, 3) and m.features(x).shape == (5, 8)


def test_l1_penalty_is_added_to_the_training_loss():
    x, y = torch.randn(6, 12), torch.randint(0, 10, (6,))
    plain, l1 = make(), make(l1_weight=0.01)
    l1.load_state_dict(plain.state_dict())
    base = plain.training_step((x, y), 0)
    with_l1 = l1.training_step((x, y), 0)
    weights = sum(p.abs().sum() for n, p in l1.named_parameters() if p.dim() > 1)
    assert torch.allclose(with_l1 - base, 0.01 * weights)


def test_label_smoothing_loss_is_the_known_mixture():
    # a head with zero weights and bias (ln 2, 0, ..., 0): every input gets p = (2/11, 1/11, ..., 1/11)
    m = make(label_smoothing=0.2)
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.copy_(torch.tensor([math.log(2.0)] + [0.0] * 9))
    x, y = torch.randn(4, 12), torch.zeros(4, dtype=torch.long)
    loss, preds, _ = m._step((x, y))
    # (1 - 0.2) * -log p_0 + 0.2 * mean_k(-log p_k)
    expected = 0.8 * math.log(5.5) + 0.2 * (math.log(5.5) + 9 * math.log(11.0)) / 10
    assert float(loss) == pytest.approx(expected, rel=1e-6) and preds.tolist() == [0, 0, 0, 0]


def test_optimizer_is_built_from_the_partial_over_all_parameters():
    m = make()
    opt = m.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["lr"] == 0.1
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in m.parameters())


def test_invalid_arguments_name_the_key():
    import pytest

    with pytest.raises(ValueError, match="model.label_smoothing"):
        make(label_smoothing=1.5)
    with pytest.raises(ValueError, match="model.num_classes"):
        make(num_classes=1)
