import pytest
import torch

from lab.backbones import CNN, MLP, RNN, LeNet, ResNet, Transformer

IMG = (1, 28, 28)
SEQ = (28, 28)

CASES = [
    (lambda: MLP(hidden_sizes=(64, 32), dropout=0.1, batch_norm=True), IMG, 32),
    (lambda: CNN(), IMG, 128),
    (lambda: CNN(channels=(8, 16, 16), batch_norm=True, hidden_size=40), IMG, 40),
    (lambda: LeNet(), IMG, 84),
    (lambda: ResNet(width=8, blocks=(1, 1, 1)), IMG, 32),
    (lambda: RNN(cell="rnn", hidden_size=16), SEQ, 16),
    (lambda: RNN(cell="lstm", hidden_size=16, num_layers=2, bidirectional=True, dropout=0.1), SEQ, 32),
    (lambda: RNN(cell="gru", hidden_size=16, pooling="mean"), SEQ, 16),
    (lambda: RNN(cell="lstm", hidden_size=16), IMG, 16),  # images are read row by row
    (lambda: Transformer(d_model=32, nhead=4, num_layers=2, dim_feedforward=64), SEQ, 32),
    (lambda: Transformer(tokens="patch", patch_size=7, d_model=32, nhead=2, num_layers=1, pooling="mean"), IMG, 32),
]


@pytest.mark.parametrize("make,shape,features", CASES)
def test_output_shape_and_gradients(make, shape, features):
    torch.manual_seed(0)
    net = make()
    x = torch.randn(4, *shape, requires_grad=True)
    out = net(x)
    assert out.shape == (4, features) and net.out_features == features
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"


def test_bidirectional_last_state_uses_both_directions():
    torch.manual_seed(0)
    net = RNN(cell="gru", hidden_size=8, bidirectional=True)
    x = torch.randn(2, 28, 28)
    out = net(x)
    full, h = net.rnn(x)
    assert torch.allclose(out[:, :8], full[:, -1, :8])  # forward direction ends at the last step
    assert torch.allclose(out[:, 8:], full[:, 0, 8:])  # backward direction ends at the first step


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MLP(hidden_sizes=(64, -1)), "backbone.hidden_sizes"),
        (lambda: MLP(activation="swishy"), "backbone.activation='swishy'.*relu"),
        (lambda: MLP(dropout=1.5), "backbone.dropout"),
        (lambda: CNN(image_size=4, channels=(8, 8, 8)), "backbone.image_size"),
        (lambda: RNN(cell="lstmx"), "backbone.cell='lstmx'.*lstm"),
        (lambda: RNN(hidden_size=0), "backbone.hidden_size=0"),
        (lambda: Transformer(d_model=30, nhead=4), "backbone.d_model=30.*backbone.nhead=4"),
        (lambda: Transformer(tokens="patch", patch_size=5), "backbone.patch_size=5"),
        (lambda: ResNet(blocks=()), "backbone.blocks"),
    ],
)
def test_invalid_sizes_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_input_that_does_not_fit_names_the_key():
    with pytest.raises(ValueError, match="backbone.in_features=100"):
        MLP(in_features=100)(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="backbone.input_size=20"):
        RNN(input_size=20)(torch.randn(2, 28, 28))
