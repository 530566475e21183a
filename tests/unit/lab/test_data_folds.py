"""K-fold cross-validation of the data modules (data.folds, data.fold): the folds partition the training data,
keep the class proportions, are fixed by the split seed, and leave the test set alone."""

import pytest
import torch

from helpers import build, make_cfg, write_image_folder
from lab.data import ImageFolderDataModule, MNISTDataModule, SeqMNISTDataModule, TorchvisionDataModule
from lab.data.base import check_folds, fold_indices


def folds_of(n, k, seed=0, targets=None):
    return [fold_indices(n, k, i, seed, targets) for i in range(k)]


@pytest.mark.parametrize(("n", "k"), [(103, 5), (10, 10), (7, 2)])
def test_folds_partition_the_examples(n, k):
    splits = folds_of(n, k)
    vals = torch.cat([v for _, v in splits])
    assert sorted(vals.tolist()) == list(range(n))  # every index in exactly one validation fold
    for train, val in splits:
        assert not set(train.tolist()) & set(val.tolist())  # train and val disjoint
        assert sorted(train.tolist() + val.tolist()) == list(range(n))  # together: everything
        assert len(val) in (n // k, n // k + 1)  # folds as equal as n allows


def test_stratified_folds_keep_the_class_proportions_within_one_example():
    targets = torch.tensor([0] * 50 + [1] * 30 + [2] * 17 + [3] * 6)[torch.randperm(103, generator=torch.Generator()
                                                                                     .manual_seed(1))]
    counts = torch.bincount(targets).double()
    for _, val in folds_of(len(targets), 5, targets=targets):
        per_class = torch.bincount(targets[val], minlength=4).double()
        assert ((per_class - counts / 5).abs() < 1).all(), per_class  # floor or ceil of each class's share
    unstratified = [torch.bincount(targets[v], minlength=4) for _, v in folds_of(len(targets), 5, seed=3)]
    assert any(((c.double() - counts / 5).abs() >= 1).any() for c in unstratified)  # not a given without targets


def test_folds_are_fixed_by_the_seed():
    a, b, c = folds_of(60, 3, seed=7), folds_of(60, 3, seed=7), folds_of(60, 3, seed=8)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[1], z[1]) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize(("folds", "fold", "targets", "says"), [
    (1, 0, None, "data.folds=1 is not valid: it must be an integer from 2 to 20"),
    (21, 0, None, "data.folds=21 is not valid: it must be an integer from 2 to 20"),
    (True, 0, None, "data.folds=True is not valid"),
    (4, 4, None, "data.fold=4 is not valid: with data.folds=4 it must be an integer from 0 to 3"),
    (4, -1, None, "data.fold=-1 is not valid: with data.folds=4 it must be an integer from 0 to 3"),
    (4, 0, torch.tensor([0] * 17 + [1] * 3), r"data.folds=4 is more than the smallest class has examples \(3\).*"
                                              r"choose data.folds <= 3"),
])
def test_bad_fold_settings_are_clear_errors(folds, fold, targets, says):
    with pytest.raises(ValueError, match=says):
        fold_indices(20, folds, fold, 0, targets)


def test_fold_settings_are_checked_before_the_data_is_read():
    check_folds(None, 0)
    check_folds(5, 4)
    with pytest.raises(ValueError, match="data.fold=2 is set but data.folds is null.*set data.folds=K"):
        check_folds(None, 2)
    with pytest.raises(ValueError, match="data.folds=1 is not valid: it must be an integer >= 2"):
        check_folds(1, 0)
    with pytest.raises(ValueError, match="data.fold=5 is not valid: with data.folds=5 it must be an integer from 0 to 4"):
        MNISTDataModule("/nonexistent", folds=5, fold=5)  # no data needed to know that


@pytest.mark.parametrize("cls", [MNISTDataModule, SeqMNISTDataModule])
def test_mnist_folds_validate_on_one_fold_train_on_the_rest_and_keep_the_test_set(data_dir, cls):
    vals, trains = [], []
    for i in range(4):
        dm = cls(str(data_dir), batch_size=16, folds=4, fold=i, verify=False)
        dm.setup("fit")
        dm.setup("test")
        train_idx, val_idx = dm.split()
        assert len(val_idx) == 100 and len(dm.train_set) == 300 and len(dm.test_set) == 100  # the official test set
        assert torch.equal(dm.val_set.targets, dm._train_labels()[val_idx])
        assert torch.bincount(dm.val_set.targets, minlength=10).tolist() == [10] * 10  # 40 of each class, / 4
        vals.append(set(val_idx.tolist()))
        trains.append(set(train_idx.tolist()))
    assert set().union(*vals) == set(range(400)) and sum(map(len, vals)) == 400
    assert all(not t & v and len(t | v) == 400 for t, v in zip(trains, vals, strict=True))


def test_labels_per_class_takes_from_the_training_folds(data_dir):
    dm = MNISTDataModule(str(data_dir), batch_size=16, folds=4, fold=1, labels_per_class=5, verify=False)
    dm.setup("fit")
    train_idx, val_idx = dm.split()
    assert torch.bincount(dm.train_set.targets).tolist() == [5] * 10 and not set(train_idx.tolist()) & set(
        val_idx.tolist())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("folds") / "train", 15)  # 2 classes x 15 images


def test_image_folder_folds_are_stratified_and_test_on_the_fold_without_test_root(folder):
    seen = []
    for i in range(3):
        dm = ImageFolderDataModule(str(folder), batch_size=4, folds=3, fold=i)
        dm.setup("fit")
        val = dm.val_set.base.indices
        targets = torch.tensor(dm.base_sets()[0].targets)
        assert torch.bincount(targets[val]).tolist() == [5, 5] and len(dm.train_set) == 20
        assert dm.test_set is dm.val_set  # no test_root: the fold doubles as the test split (as val_size's split)
        seen += val
    assert sorted(seen) == list(range(30))


def test_torchvision_folds_use_the_datasets_labels(data_dir):
    dm = TorchvisionDataModule("MNIST", data_dir=str(data_dir), download=False, batch_size=16, folds=5, fold=2)
    dm.setup("fit")
    assert len(dm.val_set) == 80 and len(dm.test_set) == 100
    labels = dm.base_sets()[0].targets[dm.val_set.base.indices]
    assert torch.bincount(labels).tolist() == [8] * 10


def test_multitask_folds_move_every_task_together(data_dir, tmp_path):
    cfg = make_cfg(["experiment=multitask_mnist_fashion", "data.folds=4", "data.fold=3"], tmp_path, data_dir)
    data = build(cfg).datamodule
    assert [(t.folds, t.fold) for t in data.tasks.values()] == [(4, 3), (4, 3)]
    data.setup("fit")
    assert [len(t.val_set) for t in data.tasks.values()] == [100, 100]
    cfg = make_cfg(["experiment=multitask_mnist_fashion", "data.folds=4", "data.fold=3", "data.tasks.mnist.fold=1"],
                   tmp_path, data_dir)
    with pytest.raises(ValueError, match="data.tasks.mnist has folds=4, fold=1 and data has folds=4, fold=3: every "
                                         "task is validated on the same fold"):
        build(cfg)
