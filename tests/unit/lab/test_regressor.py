"""lab.models.Regressor: predictions in the targets' own units, the losses, metrics with known answers
(scikit-learn's), and the checks against the data."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from helpers import build, make_cfg
from lab.backbones import MLP
from lab.contracts import DataFacts
from lab.data import TabularDataModule
from lab.errors import ConfigError
from lab.models import Regressor


def linear(in_features=3, num_targets=1, **kwargs):
    """A linear regressor: an MLP without hidden layers is the identity, so the head is the whole model."""
    return Regressor(MLP(in_features=in_features, hidden_sizes=()), functools.partial(torch.optim.AdamW, lr=1e-3),
                     num_targets=num_targets, **kwargs)


class Table(DataFacts):
    """What the regressor reads from a table's data module (lab.contracts.DataFacts)."""

    def __init__(self, names, mean, std, features=3):
        self.target_names, self.target_mean, self.target_std = names, torch.tensor(mean), torch.tensor(std)
        self.input_shape = (features,)


def test_forward_returns_the_targets_own_units():
    model = linear(num_targets=2)
    model.check_data(Table(["y", "z"], [100.0, -5.0], [20.0, 0.5]))
    x = torch.randn(4, 3)
    z = model.head(x)  # standardized predictions
    assert torch.allclose(model(x), z * torch.tensor([20.0, 0.5]) + torch.tensor([100.0, -5.0]))
    assert model.target_names == ["y", "z"] and model.hparams.target_names == ["y", "z"]
    state = model.state_dict()  # the statistics travel with the checkpoint
    assert torch.equal(state["target_mean"], torch.tensor([100.0, -5.0]))


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_losses_compare_standardized_targets(loss):
    model = linear(loss=loss, huber_delta=0.5)
    model.check_data(Table(["y"], [10.0], [2.0]))
    z = torch.tensor([[0.0], [1.0], [-3.0]])
    y = torch.tensor([[10.0], [10.0], [10.0]])  # standardized: 0
    expected = {"mse": F.mse_loss, "l1": F.l1_loss,
                "huber": functools.partial(F.huber_loss, delta=0.5)}[loss](z, torch.zeros(3, 1))
    assert torch.isclose(model._loss(z, y), expected)
    assert {"mse": 10 / 3, "l1": 4 / 3, "huber": (0 + 0.375 + 1.375) / 3}[loss] == pytest.approx(expected.item())


OUTSIDE_A_TRAINER = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


@OUTSIDE_A_TRAINER
def test_metrics_match_scikit_learn_on_several_batches():
    torch.manual_seed(0)
    model = linear(num_targets=2)
    model.check_data(Table(["y", "z"], [50.0, 1.0], [10.0, 3.0]))
    xs, ys = torch.randn(3, 20, 3), torch.randn(3, 20, 2) * torch.tensor([10.0, 3.0]) + torch.tensor([50.0, 1.0])
    with torch.no_grad():
        for x, y in zip(xs, ys, strict=True):
            model._update("test", *model._step((x, y)))  # outside a trainer: updates the metrics, logs nothing
        preds = model(xs.flatten(0, 1)).numpy()
    y = ys.flatten(0, 1).numpy()
    assert model.test_mae.compute().item() == pytest.approx(mean_absolute_error(y.ravel(), preds.ravel()), rel=1e-5)
    rmse = np.sqrt(mean_squared_error(y.ravel(), preds.ravel()))
    assert model.test_rmse.compute().item() == pytest.approx(rmse, rel=1e-5)
    assert model.test_r2.compute().item() == pytest.approx(r2_score(y, preds), rel=1e-4)  # mean of per-target R2


@OUTSIDE_A_TRAINER
def test_a_perfect_model_scores_r2_one_and_zero_errors():
    model = linear(in_features=1)
    model.check_data(Table(["y"], [7.0], [3.0], features=1))
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
        x = torch.linspace(-2, 2, 11)[:, None]
        model._update("val", *model._step((x, x * 3 + 7)))  # y = 3 z + 7 exactly
    assert model.val_r2.compute().item() == pytest.approx(1.0)
    assert model.val_mae.compute().item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(loss="mae"), r"model.loss='mae' is not valid; valid choices: mse, l1, huber"),
        (dict(huber_delta=0), r"model.huber_delta=0 is not valid"),
        (dict(num_targets=0), r"model.num_targets=0 is not valid"),
        (dict(target_names=["a", "b"]), r"model.target_names=\['a', 'b'\] has 2 names for model.num_targets=1"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linear(**kwargs)


def test_check_data_names_what_does_not_fit():
    with pytest.raises(ValueError, match=r"num_targets=1 but the data has 2 target column\(s\) \(y, z\); set model.num_targets=2"):
        linear().check_data(Table(["y", "z"], [0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match=r"inputs of shape \(10,\).*set model.backbone.in_features=10"):
        linear().check_data(Table(["y"], [0.0], [1.0], features=10))
    with pytest.raises(ValueError, match=r"model.target_names=\['w'\] but the data's targets are \['y'\]"):
        linear(target_names=["w"]).check_data(Table(["y"], [0.0], [1.0]))
    with pytest.raises(ValueError, match=r"needs a table with target columns .*MNISTDataModule"):
        from lab.data import MNISTDataModule

        linear().check_data(MNISTDataModule())


def test_the_preset_builds_with_the_datas_statistics(tmp_path):
    cfg = make_cfg(["experiment=regress_diabetes"], tmp_path, None)
    runner = build(cfg)
    dm, model = runner.datamodule, runner.model
    assert isinstance(dm, TabularDataModule) and isinstance(model, Regressor)
    assert torch.equal(model.target_mean, dm.target_mean) and torch.equal(model.target_std, dm.target_std)
    assert model.target_names == ["target"] and cfg.optimized_metric == "val/r2"


def test_a_regressor_on_image_data_is_a_config_error(tmp_path, data_dir):
    cfg = make_cfg(["model=regressor", "data=mnist", "model.backbone.in_features=784"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="model.num_targets is null, to be taken from the data, but the data does not give it"):
        build(cfg)
