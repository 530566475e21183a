"""RBM maths against brute-force enumeration on a tiny RBM, CD's gradient, and the DBN's phases."""

import functools
import itertools

import pytest
import torch

from generative.rbm import DBN, RBM, RBMLayer
from generative.rbm.dbn import check_epochs, pretraining_layer
from lab.errors import ConfigError


def tiny(seed=0, visible=3, hidden=2):
    torch.manual_seed(seed)
    layer = RBMLayer(visible, hidden)
    with torch.no_grad():  # weights large enough that the distribution is far from uniform
        layer.W.normal_(0, 1.0)
        layer.b.normal_(0, 0.5)
        layer.c.normal_(0, 0.5)
    return layer


def states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))  # (2^n, n)


def energy(layer, v, h):  # (A, V), (B, H) -> (A, B): E(v, h) = -v W h - b v - c h
    return -(v @ layer.W @ h.t()) - (v @ layer.b).unsqueeze(1) - (h @ layer.c).unsqueeze(0)


def test_free_energy_is_minus_log_sum_over_hidden_states():
    layer = tiny()
    v, h = states(3), states(2)
    brute = -torch.logsumexp(-energy(layer, v, h), dim=1)
    assert torch.allclose(layer.free_energy(v), brute, atol=1e-5)


def test_conditionals_match_enumeration():
    layer = tiny(1)
    v, h = states(3), states(2)
    joint = torch.softmax(-energy(layer, v, h).flatten(), 0).view(8, 4)  # p(v, h)
    p_h_given_v = joint / joint.sum(1, keepdim=True)  # (8, 4)
    expected_h = p_h_given_v @ h  # E[h_j | v] = p(h_j = 1 | v)
    assert torch.allclose(layer.p_h(v), expected_h, atol=1e-5)
    p_v_given_h = joint / joint.sum(0, keepdim=True)  # (8, 4)
    expected_v = p_v_given_h.t() @ v  # (4, 3)
    assert torch.allclose(layer.p_v(h), expected_v, atol=1e-5)


def test_pseudo_log_likelihood_matches_the_sum_of_exact_conditionals():
    layer = tiny(2, visible=4, hidden=3)
    v = states(4)
    p_v = torch.softmax(-layer.free_energy(v), 0)  # p(v) over the 16 states
    index = {tuple(s.tolist()): i for i, s in enumerate(v)}
    expected = []
    for s in v:
        total = 0.0
        for i in range(4):
            other = s.clone()
            other[i] = 1 - other[i]
            total += torch.log(p_v[index[tuple(s.tolist())]] / (p_v[index[tuple(s.tolist())]]
                                                                   + p_v[index[tuple(other.tolist())]]))
        expected.append(total)
    assert torch.allclose(layer.pseudo_log_likelihood(v, chunk=5), torch.stack(expected), atol=1e-5)


def test_cd_loss_gradient_is_the_data_minus_model_statistics():
    layer = tiny(3)
    v_data, v_model = torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    layer.cd_loss(v_data, v_model).backward()
    # -dF/dW = v p(h|v)^T, -dF/db = v: descent on the loss raises the data's statistics, lowers the model's
    expected_W = -(v_data.t() @ layer.p_h(v_data) - v_model.t() @ layer.p_h(v_model))
    assert torch.allclose(layer.W.grad, expected_W.detach(), atol=1e-6)
    assert layer.b.grad.tolist() == [-1.0, -1.0, 1.0]


def test_cd_on_all_ones_data_raises_visible_biases_and_lowers_the_free_energy_of_the_data():
    torch.manual_seed(0)
    layer = RBMLayer(4, 3)
    data = torch.ones(64, 4)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.free_energy(data[:1]).item()
    for _ in range(50):
        vk, _ = layer.gibbs(data, k=1)
        opt.zero_grad()
        layer.cd_loss(data, vk).backward()
        opt.step()
    assert (layer.b > 0.5).all()
    assert layer.free_energy(data[:1]).item() < before - 1.0
    v = states(4)  # all-ones is now the most probable visible state
    assert layer.free_energy(v).argmin().item() == 15


def test_long_gibbs_chains_sample_the_model_distribution():
    layer = tiny(4)
    torch.manual_seed(0)
    v, _ = layer.gibbs(torch.bernoulli(torch.full((20000, 3), 0.5)), k=30)
    p_v = torch.softmax(-layer.free_energy(states(3)), 0)
    codes = (v @ torch.tensor([4.0, 2.0, 1.0])).long()
    empirical = torch.bincount(codes, minlength=8).float() / len(codes)
    assert torch.allclose(empirical, p_v.detach(), atol=0.015)


def make_rbm(**kw):
    return RBM(functools.partial(torch.optim.SGD, lr=0.05), in_features=16, channels=1, image_size=4, hidden=6,
               grid_size=4, **kw)


def test_rbm_checks_its_keys():
    with pytest.raises(ValueError, match=r"model.k=0 is not valid: contrastive divergence needs k >= 1"):
        make_rbm(k=0)
    with pytest.raises(ValueError, match="model.in_features=16 is not channels x image_size"):
        RBM(functools.partial(torch.optim.SGD, lr=0.05), in_features=16, channels=1, image_size=5)


def test_persistent_cd_carries_its_chains_across_steps():
    model = make_rbm(persistent=True, num_chains=8, k=2)
    before = model.chains.clone()
    model.log = model.log_dict = lambda *a, **k: None
    model.training_step((torch.rand(5, 1, 4, 4), torch.zeros(5)), 0)
    assert model.chains.shape == (8, 16) and not torch.equal(model.chains, before)
    assert "chains" in model.state_dict()


def test_dbn_pretrains_each_layer_for_its_epochs_then_fine_tunes():
    assert [pretraining_layer(e, 2, 2) for e in range(6)] == [0, 0, 1, 1, None, None]
    assert [pretraining_layer(e, 0, 2) for e in range(2)] == [None, None]  # the random-init baseline
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=4 leaves no epoch for fine-tuning.*> 4"):
        check_epochs(4, 2, 2)
    check_epochs(5, 2, 2)
    dbn = DBN(functools.partial(torch.optim.Adam), functools.partial(torch.optim.SGD, lr=0.1), in_features=16,
              channels=1, image_size=4, num_classes=3, hidden_sizes=(5, 4), pretrain_epochs=2)
    assert dbn(torch.rand(7, 1, 4, 4)).shape == (7, 3)
    assert [r.W.shape for r in dbn.rbms] == [(16, 5), (5, 4)]
    assert len(dbn.configure_optimizers()) == 3 and dbn.optimizer_names == ("rbm1", "rbm2", "finetune")
