"""Transfer learning: which checkpoint a source names, what loads, what freezes, which learning rates."""

import functools
import os
import time
from types import SimpleNamespace

import pytest
import torch

from lab.backbones import MLP
from lab.data.vision import per_class_subset
from lab.layout import find_checkpoint
from lab.models import Classifier
from lab.models.optim import configure, scheduler_config


def make(num_classes=10, hidden=(8,), **kw):
    torch.manual_seed(len(kw) + num_classes)
    return Classifier(MLP(in_features=12, hidden_sizes=hidden), functools.partial(torch.optim.SGD, lr=0.1),
                      num_classes=num_classes, **kw)


def save(model, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_find_checkpoint_takes_a_file_the_best_of_a_run_and_the_newest_run_of_a_task(tmp_path):
    old = tmp_path / "cnn_mnist" / "runs" / "a" / "checkpoints"
    new = tmp_path / "cnn_mnist" / "runs" / "b" / "checkpoints"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"x")
        (folder / "epoch_002.ckpt").write_bytes(b"x")
    past = time.time() - 100
    for f in old.iterdir():
        os.utime(f, (past, past))
    assert find_checkpoint(new / "last.ckpt", "model.init_from") == new / "last.ckpt"
    assert find_checkpoint(old.parent, "model.init_from") == old / "epoch_002.ckpt"  # a run folder: its best
    assert find_checkpoint(tmp_path / "cnn_mnist", "model.init_from") == new / "epoch_002.ckpt"  # a task folder: its newest run
    (new / "epoch_002.ckpt").unlink()
    assert find_checkpoint(new.parent, "model.init_from") == new / "last.ckpt"  # no best kept: the last
    with pytest.raises(ValueError, match="does not exist"):
        find_checkpoint(tmp_path / "nope", "model.init_from")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no checkpoints"):
        find_checkpoint(tmp_path / "empty", "model.init_from")


def test_init_from_loads_matching_tensors_and_reports_the_rest(tmp_path):
    source = make(num_classes=10)
    ckpt = save(source, tmp_path / "a.ckpt")
    target = make(num_classes=5, init_from=str(ckpt))
    t = target.transfer
    assert sorted(t.loaded) == sorted(k for k in source.state_dict() if k.startswith("backbone."))
    assert [m.split()[0] for m in t.mismatched] == ["head.weight", "head.bias"]  # (10, 8) -> (5, 8)
    for k in t.loaded:
        assert torch.equal(target.state_dict()[k], source.state_dict()[k])
    assert not torch.equal(target.head.bias, source.head.bias[:5])  # left as initialized


def test_init_modules_loads_only_those_and_the_rest_is_new(tmp_path):
    source = make()
    ckpt = save(source, tmp_path / "a.ckpt")
    target = make(init_from=str(ckpt), init_modules=["backbone"])
    assert all(k.startswith("backbone.") for k in target.transfer.loaded)
    assert target.transfer.new == [] and target.transfer.mismatched == []
    assert not torch.equal(target.head.weight, source.head.weight)  # same shape, but not taken
    plain = tmp_path / "plain.pt"  # a plain state_dict also works
    torch.save(source.state_dict(), plain)
    assert torch.equal(make(init_from=str(plain)).head.weight, source.head.weight)


def test_init_from_that_matches_nothing_is_an_error_naming_both_sides(tmp_path):
    ckpt = save(make(hidden=(16,)), tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match=r"no tensor under \['backbone'\] matches the model by name and shape"):
        make(hidden=(8,), init_from=str(ckpt), init_modules=["backbone"])
    torch.save({"state_dict": {"x": 1}}, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="holds no tensors"):
        make(init_from=str(tmp_path / "b.ckpt"))


def test_freeze_keeps_modules_fixed_in_eval_mode_and_out_of_the_optimizer():
    model = make(freeze=["backbone"])
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert model.head.training and not model.backbone.training
    opt = configure(model, model.optimizer_factory, None)["optimizer"]
    assert [p for g in opt.param_groups for p in g["params"]] == list(model.head.parameters())
    with pytest.raises(ValueError, match=r"model.freeze: 'body' is not a module of Classifier; valid choices: "
                                         r"backbone, head"):
        make(freeze=["body"])
    with pytest.raises(ValueError, match="freezes every parameter"):
        make(freeze=["backbone", "head"])


def test_pretrained_parameters_train_at_the_scaled_learning_rate_also_under_one_cycle(tmp_path):
    ckpt = save(make(), tmp_path / "a.ckpt")
    model = make(init_from=str(ckpt), init_modules=["backbone"], pretrained_lr_scale=0.1)
    opt = configure(model, model.optimizer_factory, None)["optimizer"]
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert [lrs[id(p)] for p in model.backbone.parameters()] == pytest.approx([0.01, 0.01])
    assert [lrs[id(p)] for p in model.head.parameters()] == [0.1, 0.1]
    cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1)
    trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=1)  # what one-cycle reads of it
    sched = scheduler_config(cycle, opt, trainer)["scheduler"]
    peaks = [g["max_lr"] for g in sched.optimizer.param_groups]
    assert peaks == [pytest.approx(0.1), pytest.approx(0.01)]
    with pytest.raises(ValueError, match="pretrained_lr_scale=-1 must be a number >= 0"):
        make(pretrained_lr_scale=-1)


def test_per_class_subset_is_fixed_by_seed_and_keeps_n_of_each_class():
    targets = torch.arange(1000) % 10
    indices = torch.arange(100, 1000)
    a = per_class_subset(targets, indices, 7, seed=3)
    assert torch.bincount(targets[a]).tolist() == [7] * 10
    assert set(a.tolist()) <= set(indices.tolist())
    assert torch.equal(a, per_class_subset(targets, indices, 7, seed=3))
    assert not torch.equal(a, per_class_subset(targets, indices, 7, seed=4))
    with pytest.raises(ValueError, match="labels_per_class=91 is more than class 0 has"):
        per_class_subset(targets, indices, 91, seed=0)


@pytest.mark.parametrize("steps,pct_start", [(4, 0.25), (10, 0.1), (2, 0.5)])
def test_one_cycle_survives_a_warm_up_of_exactly_one_step(steps, pct_start):
    """torch's OneCycleLR divides by zero where pct_start x total_steps == 1 (4 steps at 0.25): the lab's
    scheduler config gives it one step more, so the run's steps start at max_lr / div_factor, rise and end at the
    floor, max_lr / div_factor / final_div_factor."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, pct_start=pct_start)
    sched = scheduler_config(cycle, opt, SimpleNamespace(estimated_stepping_batches=steps, max_epochs=1))["scheduler"]
    assert sched.total_steps == steps + 1
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) > 0.05
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)
    untouched = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, pct_start=0.25)
    assert scheduler_config(untouched, opt, SimpleNamespace(estimated_stepping_batches=8))["scheduler"].total_steps == 8
