import pytest
import torch
from torchvision.transforms import v2

from lab.data import FashionMNISTDataModule, MNISTDataModule, SeqMNISTDataModule


def test_split_is_fixed_by_seed_and_disjoint(data_dir):
    a = MNISTDataModule(str(data_dir), batch_size=16, val_size=100, verify=False)
    b = MNISTDataModule(str(data_dir), batch_size=16, val_size=100, verify=False)
    c = MNISTDataModule(str(data_dir), batch_size=16, val_size=100, split_seed=7, verify=False)
    for dm in (a, b, c):
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")
    assert len(a.train_set) == 300 and len(a.val_set) == 100 and len(a.test_set) == 100
    assert torch.equal(a.val_set.images, b.val_set.images)
    assert not torch.equal(a.val_set.images, c.val_set.images)
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y.dtype == torch.int64
    # normalized with MNIST's statistics: background (0) maps to -mean/std
    assert torch.isclose(x.min(), torch.tensor(-0.1307 / 0.3081), atol=1e-5)


def test_seq_mnist_gives_rows(data_dir):
    dm = SeqMNISTDataModule(str(data_dir), batch_size=8, val_size=50, verify=False)
    dm.setup("fit")
    x, _ = next(iter(dm.val_dataloader()))
    assert dm.input_shape == (28, 28) and x.shape[1:] == (28, 28)


def test_augmentation_only_on_train(data_dir):
    dm = FashionMNISTDataModule(str(data_dir), batch_size=8, val_size=50, verify=False,
                                augment=v2.RandomHorizontalFlip(p=1.0))
    dm.setup("fit")
    x, _ = dm.train_set[0]
    raw = dm.train_set.images[0].float() / 255
    assert torch.allclose(x[0] * dm.std + dm.mean, raw.flip(-1), atol=1e-6)
    xv, _ = dm.val_set[0]
    assert torch.allclose(xv[0] * dm.std + dm.mean, dm.val_set.images[0].float() / 255, atol=1e-6)


def test_val_size_too_large_is_a_clear_error_when_the_module_is_made(data_dir):
    with pytest.raises(ValueError, match="data.val_size=5000 is not valid: the data has 400 examples to split.*choose "
                                         "a count from 1 to 399 or a fraction from 0.0025 to 0.998"):
        MNISTDataModule(str(data_dir), val_size=5000, verify=False)
