"""Multi-task learning: the data module's batches, the uncertainty weighting, the model's checks."""

import functools

import pytest
import torch

from helpers import MULTITASK_SMOKE, make_cfg
from lab.backbones import MLP
from lab.data import FashionMNISTDataModule, MNISTDataModule, MultiTaskDataModule, SeqMNISTDataModule
from lab.instantiate import instantiate
from lab.models import MultiTask
from lab.models.multitask import uncertainty_weighted


def test_training_batches_hold_every_task_and_evaluation_one_loader_per_task(tmp_path, data_dir):
    cfg = make_cfg(["data=multitask_mnist_fashion", *MULTITASK_SMOKE], tmp_path, data_dir, smoke=False)
    dm = instantiate(cfg.data, "data")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.input_shape == (1, 28, 28) and list(dm.task_classes) == ["mnist", "fashion"]
    assert dm.task_classes["fashion"][0] == "T-shirt/top" and dm.batch_size == 64
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert set(batch) == {"mnist", "fashion"} and batch["mnist"][0].shape == (32, 1, 28, 28)
    assert not torch.equal(batch["mnist"][0], batch["fashion"][0])
    assert [len(loader.dataset) for loader in dm.val_dataloader()] == [100, 100]


def test_tasks_of_different_input_shapes_are_refused(tmp_path):
    tasks = {"a": MNISTDataModule(str(tmp_path)), "b": SeqMNISTDataModule(str(tmp_path))}
    with pytest.raises(ValueError, match="inputs of different shapes"):
        MultiTaskDataModule(tasks)
    assert MultiTaskDataModule({"a": MNISTDataModule(str(tmp_path)), "b": FashionMNISTDataModule(str(tmp_path))})


def test_uncertainty_weighting_is_kendalls_classification_form_and_learns_the_weights():
    losses, s = torch.tensor([2.0, 0.5]), torch.tensor([0.0, 1.0])
    expected = 2.0 + 0.5 * torch.exp(torch.tensor(-1.0)) + 0.5  # sum exp(-s) L + s / 2
    assert uncertainty_weighted(losses, s).item() == pytest.approx(expected.item())
    log_vars = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([log_vars], lr=0.1)
    for _ in range(500):  # the optimum of exp(-s) L + s / 2 is s = log(2 L): the larger loss weighs less
        opt.zero_grad()
        uncertainty_weighted(losses, log_vars).backward()
        opt.step()
    assert log_vars.detach().tolist() == pytest.approx([torch.log(torch.tensor(4.0)).item(), 0.0], abs=1e-3)


def make(**kw):
    return MultiTask(MLP(in_features=12, hidden_sizes=(8,)), functools.partial(torch.optim.SGD, lr=0.1),
                     task_classes={"a": ["0", "1"], "b": ["x", "y", "z"]}, **kw)


def test_heads_fit_their_tasks_and_bad_keys_are_named():
    model = make()
    assert model(torch.zeros(4, 12), "a").shape == (4, 2) and model(torch.zeros(4, 12), "b").shape == (4, 3)
    with pytest.raises(ValueError, match="model.weighting='learned' is not valid; valid choices: fixed, uncertainty"):
        make(weighting="learned")
    with pytest.raises(ValueError, match="exclude each other"):
        make(weighting="uncertainty", loss_weights={"a": 2.0})
    assert make(loss_weights={"b": 3.0}).loss_weights.tolist() == [1.0, 3.0]


def test_fixed_weights_scale_each_task_loss():
    model = make(loss_weights={"a": 0.0})
    model.log = lambda *a, **k: None
    batch = {"a": (torch.randn(5, 12), torch.randint(0, 2, (5,))), "b": (torch.randn(6, 12), torch.randint(0, 3, (6,)))}
    total = model.training_step(batch, 0)
    only_b = torch.nn.functional.cross_entropy(model(batch["b"][0], "b"), batch["b"][1])
    assert total.item() == pytest.approx(only_b.item(), rel=1e-5)
