"""Weight initialization (`init` of every backbone, lab/backbones/init.py) and the activations the backbones take:
known answers for each scheme (orthogonal rows, Glorot-uniform bounds, He-normal std, zero biases)."""

import math

import pytest
import torch
from torch import nn

from lab.backbones import CNN, MLP, RNN, LeNet, ResNet, Transformer
from lab.backbones.init import initialize
from lab.checks import ACTIVATIONS

IMG, SEQ = (1, 28, 28), (28, 28)

BACKBONES = {
    "mlp": (lambda **kw: MLP(hidden_sizes=(64, 32), **kw), IMG),
    "cnn": (lambda **kw: CNN(channels=(8, 16), hidden_size=32, **kw), IMG),
    "lenet": (lambda **kw: LeNet(**kw), IMG),
    "resnet": (lambda **kw: ResNet(width=8, blocks=(1, 1), **kw), IMG),
    "rnn": (lambda **kw: RNN(cell="rnn", hidden_size=16, **kw), SEQ),
    "transformer": (lambda **kw: Transformer(d_model=32, nhead=4, num_layers=1, dim_feedforward=64, **kw), SEQ),
}


def test_orthogonal_rows_are_orthonormal_for_every_layer_and_gate():
    torch.manual_seed(0)
    mlp = initialize(MLP(in_features=300, hidden_sizes=(100, 50)), "orthogonal")
    for layer in (m for m in mlp.modules() if isinstance(m, nn.Linear)):
        w = layer.weight  # (out, in) with out < in: W W^T = I
        assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-5)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    lstm = RNN(cell="lstm", input_size=28, hidden_size=16, num_layers=2, init="orthogonal").rnn
    for name in ("weight_hh_l0", "weight_hh_l1"):
        for gate in getattr(lstm, name).chunk(4, 0):  # i, f, g, o: each a square orthogonal matrix
            assert torch.allclose(gate @ gate.T, torch.eye(16), atol=1e-5)
    assert all(torch.equal(p, torch.zeros_like(p)) for n, p in lstm.named_parameters() if n.startswith("bias"))
    # not orthogonal under PyTorch's own initialization (uniform in +-1/sqrt(H)): the test can tell them apart
    plain = RNN(cell="lstm", input_size=28, hidden_size=16).rnn.weight_hh_l0[:16]
    assert not torch.allclose(plain @ plain.T, torch.eye(16), atol=1e-2)


def test_xavier_uniform_bounds_and_variance():
    torch.manual_seed(0)
    fan_in, fan_out = 400, 200
    w = initialize(nn.Linear(fan_in, fan_out), "xavier").weight
    a = math.sqrt(6 / (fan_in + fan_out))  # Glorot & Bengio: U(-a, a)
    assert w.abs().max() <= a and w.abs().max() > 0.99 * a  # 80,000 draws reach the bound
    assert abs(w.var().item() - a * a / 3) < 0.02 * a * a / 3


def test_kaiming_normal_std_for_linear_and_conv():
    torch.manual_seed(0)
    linear = initialize(nn.Linear(500, 300), "kaiming")
    assert abs(linear.weight.std().item() / math.sqrt(2 / 500) - 1) < 0.02  # He et al.: N(0, 2 / fan_in)
    conv = initialize(nn.Conv2d(16, 64, 3), "kaiming")  # fan_in = 16 * 3 * 3
    assert abs(conv.weight.std().item() / math.sqrt(2 / 144) - 1) < 0.03
    assert torch.equal(conv.bias, torch.zeros(64))


def test_default_leaves_pytorchs_initialization():
    torch.manual_seed(0)
    a = MLP(in_features=20, hidden_sizes=(8,))
    torch.manual_seed(0)
    b = MLP(in_features=20, hidden_sizes=(8,), init="default")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert b.net[0].bias.abs().sum() > 0  # PyTorch's biases are not zero


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal"])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_takes_every_init(name, scheme):
    make, shape = BACKBONES[name]
    torch.manual_seed(0)
    net = make(init=scheme)
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.RNNBase))]
    assert layers, name
    for m in layers:  # every weight layer was re-initialized: its biases are zero
        for n, p in m.named_parameters():
            if n.startswith("bias"):
                assert torch.equal(p, torch.zeros_like(p)), f"{name}: {n}"
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, net.out_features) and torch.isfinite(out).all()


def test_transformer_attention_projections_are_initialized_per_block():
    torch.manual_seed(0)
    net = Transformer(d_model=32, nhead=4, num_layers=1, dim_feedforward=64, init="orthogonal")
    attn = net.encoder.layers[0].self_attn
    for block in attn.in_proj_weight.chunk(3, 0):  # q, k, v: square, orthogonal each
        assert torch.allclose(block @ block.T, torch.eye(32), atol=1e-5)
    assert torch.equal(attn.in_proj_bias, torch.zeros(96))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "lenet", "resnet", "transformer"])
def test_backbones_take_sigmoid_and_tanh(name, activation):
    make, shape = BACKBONES[name]
    net = make(activation=activation)
    kinds = {type(m) for m in net.modules()}
    assert ACTIVATIONS[activation] in kinds and nn.ReLU not in kinds and nn.GELU not in kinds
    assert net(torch.randn(2, *shape)).shape == (2, net.out_features)


def test_sigmoid_mlp_is_the_logistic_function_of_its_layer():
    net = MLP(in_features=10, hidden_sizes=(5,), activation="sigmoid")
    x = torch.randn(50, 10)
    z = net.net[0](x)
    assert torch.allclose(net(x), 1 / (1 + torch.exp(-z)))


def test_rnn_activation_is_the_plain_cells_nonlinearity():
    torch.manual_seed(0)
    relu = RNN(cell="rnn", input_size=4, hidden_size=8, activation="relu")
    assert relu.rnn.nonlinearity == "relu"
    x = torch.randn(3, 5, 4)
    assert (relu(x) >= 0).all()  # h_T = relu(...): never negative
    assert (RNN(cell="rnn", input_size=4, hidden_size=8)(x) < 0).any()  # tanh: some are


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MLP(init="he"), r"model.backbone.init='he' is not valid; valid choices: default, xavier, kaiming"),
        (lambda: CNN(activation="softsign"), r"model.backbone.activation='softsign'.*sigmoid"),
        (lambda: ResNet(activation="swish"), r"model.backbone.activation='swish'"),
        (lambda: RNN(cell="rnn", activation="sigmoid"), r"model.backbone.activation='sigmoid'.*tanh, relu"),
        (lambda: RNN(cell="lstm", activation="relu"), r"activation='relu' is not valid for model.backbone.cell=lstm"),
        (lambda: Transformer(activation="rectifier"), r"model.backbone.activation='rectifier'"),
    ],
)
def test_bad_init_or_activation_names_the_key_and_the_choices(make, match):
    with pytest.raises(ValueError, match=match):
        make()
