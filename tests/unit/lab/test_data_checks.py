"""Every data option checked against the data before anything trains: split sizes, batch sizes, image sizes and
channels, labels per class; each error one paragraph naming the key, its value and the valid range."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_cfg, synthetic_arrays, write_image_folder
from lab.data import ImageFolderDataModule, MNISTDataModule, Seq2SeqDataModule, TorchvisionDataModule
from lab.data.fetch import raw_dir, write_dataset
from lab.errors import ConfigError


def mnist(data_dir, **kw):
    return MNISTDataModule(str(data_dir), **{"verify": False, "val_size": 100, "batch_size": 16, **kw})


@pytest.mark.parametrize(("kw", "says"), [
    ({"val_size": 0}, r"data.val_size=0 is not valid: it must be a number > 0"),
    ({"val_size": 400}, r"data.val_size=400 is not valid: the data has 400 examples to split, and validation and "
                        r"training each need at least one; choose a count from 1 to 399 or a fraction from 0.0025 "
                        r"to 0.998"),
    ({"val_size": 0.001}, r"data.val_size=0.001 is not valid: 0.001 of the 400 examples is 0"),
    ({"val_size": 12.5}, r"data.val_size=12.5 is not valid: it must be a count of examples \(an integer from 1 to "
                         r"399\) or a fraction between 0 and 1"),
    ({"batch_size": 301}, r"data.batch_size=301 is larger than the training split, which has 300 examples: choose "
                          r"data.batch_size from 1 to 300"),
    ({"folds": 4, "batch_size": 301}, r"data.batch_size=301 is larger than the training split, which has 300"),
    ({"folds": 41}, r"data.folds=41 is more than the smallest class has examples \(40\)"),
    ({"folds": 401}, r"data.folds=401 is not valid: it must be an integer from 2 to 400"),
    ({"labels_per_class": 0}, r"data.labels_per_class=0 is not valid: it must be an integer >= 1"),
    ({"folds": 4, "labels_per_class": 31}, r"data.labels_per_class=31 is more than class 0 has in the training split "
                                           r"\(30\); choose data.labels_per_class from 1 to 30"),
    ({"folds": 4, "labels_per_class": 3, "batch_size": 31},
     r"data.batch_size=31 is larger than the training split, which has 30 examples.*data.labels_per_class"),
])
def test_mnist_options_are_checked_against_the_data_when_the_module_is_made(data_dir, kw, says):
    with pytest.raises(ValueError, match=says) as e:
        mnist(data_dir, **kw)
    assert "\n" not in str(e.value)


def test_the_largest_valid_values_pass(data_dir):
    dm = mnist(data_dir, batch_size=300)  # the whole training split in one batch
    assert len(dm.split()[0]) == 300
    assert len(mnist(data_dir, val_size=0.25).split()[1]) == 100  # a fraction of the 400
    assert len(mnist(data_dir, folds=40, batch_size=390).split()[1]) == 10  # every class has 40
    assert len(mnist(data_dir, eval_batch_size=5000).split()[1]) == 100  # evaluation batches may hold a whole split


def test_without_the_files_the_check_waits_for_them_and_runs_before_training(tmp_path):
    dm = mnist(tmp_path, batch_size=301)  # nothing on disk yet (prepare_data would fetch it): no error now
    write_dataset(raw_dir(tmp_path, "mnist"), synthetic_arrays())
    with pytest.raises(ValueError, match="data.batch_size=301 is larger than the training split, which has 300"):
        dm.setup("fit")
    assert dm.train_set is None


def test_a_bad_option_stops_the_run_before_anything_is_written(data_dir, tmp_path):
    from lab.run import run

    cfg = make_cfg(["experiment=mlp_mnist", "data.folds=5", "data.fold=1", "data.batch_size=500"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"data.batch_size=500 is larger than the training split, which has 320 "
                                          r"examples: choose data.batch_size from 1 to 320"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("checks") / "train", 15)  # 2 classes x 15 RGB 32x32


@pytest.mark.parametrize(("kw", "says"), [
    ({"image_size": 0}, r"data.image_size=0 is not valid: it must be an integer >= 1"),
    ({"image_size": 2.5}, r"data.image_size=2.5 is not valid: it must be an integer >= 1"),
    ({"grayscale": "yes"}, r"data.grayscale='yes' is not valid; valid choices: null \(the data's own channels\), "
                           r"true \(one channel\), false \(RGB\)\."),
    ({"grayscale": 1}, r"data.grayscale=1 is not valid"),
    ({"val_size": 0.01}, r"data.val_size=0.01 is not valid: 0.01 of the 30 examples is 0.*a fraction from 0.0333"),
    ({"val_size": 30}, r"data.val_size=30 is not valid: the data has 30 examples to split"),
    ({"batch_size": 28}, r"data.batch_size=28 is larger than the training split, which has 27 examples: choose "
                         r"data.batch_size from 1 to 27"),  # val_size 0.1 of 30
    ({"folds": 16}, r"data.folds=16 is more than the smallest class has examples \(15\)"),
    ({"folds": 3, "fold": 3}, r"data.fold=3 is not valid: with data.folds=3 it must be an integer from 0 to 2"),
    ({"fold": 1}, r"data.fold=1 is set but data.folds is null"),
])
def test_image_folder_options_are_checked_when_the_module_is_made(folder, kw, says):
    with pytest.raises(ValueError, match=says) as e:
        ImageFolderDataModule(str(folder), **kw)
    assert "\n" not in str(e.value)


def test_images_of_different_sizes_need_an_image_size(tmp_path):
    root = write_image_folder(tmp_path / "mixed", 4)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "red" / "big.png")
    with pytest.raises(ValueError, match=r"data.image_size=null keeps every image's own size, and the images differ: "
                                         r".*blue/0.png is 32x32 and .*red/big.png is 40x48 \(height x width\); set "
                                         r"data.image_size=<n> .* e.g. data.image_size=48"):
        ImageFolderDataModule(str(root), batch_size=2)
    assert ImageFolderDataModule(str(root), batch_size=2, image_size=16).input_shape == (3, 16, 16)
    test = write_image_folder(tmp_path / "test64", 2)  # a test split of another size than the training images
    for p in test.rglob("*.png"):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(p)
    with pytest.raises(ValueError, match=r"32x32 and .*test64/blue/0.png is 64x64"):
        ImageFolderDataModule(str(write_image_folder(tmp_path / "train32", 4)), test_root=str(test), batch_size=2)


class MixedChannels(torch.utils.data.Dataset):
    """A torchvision-style dataset whose images are grey or RGB (as some of torchvision's are)."""

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        self.targets = [i % 2 for i in range(20)]

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int):
        mode = "L" if i == 19 else "RGB"
        return Image.new(mode, (8, 8)), self.targets[i]


def test_torchvision_images_of_different_channels_need_grayscale(monkeypatch):
    monkeypatch.setattr("lab.data.folder.dataset_class", lambda name: MixedChannels)
    dm = TorchvisionDataModule("Mixed", val_size=4, batch_size=4)  # opened when first used, e.g. by the model's sizes
    with pytest.raises(ValueError, match=r"data.grayscale=null keeps every image's own channels, and they differ: "
                                         r"train image 0 has 3 and train image 19 has 1; valid choices: "
                                         r"data.grayscale=true \(one channel\) or false"):
        _ = dm.input_shape
    assert TorchvisionDataModule("Mixed", val_size=4, batch_size=4, grayscale=True).input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"data.batch_size=17 is larger than the training split, which has 16"):
        TorchvisionDataModule("Mixed", val_size=4, batch_size=17, grayscale=False).prepare_data()
    with pytest.raises(ValueError, match=r"data.grayscale='rgb' is not valid; valid choices: null \(the data's own "
                                         r"channels\), true \(one channel\), false \(RGB\)"):
        TorchvisionDataModule("Mixed", grayscale="rgb")


def test_seq2seq_batch_size_is_checked_against_num_train():
    with pytest.raises(ValueError, match=r"data.batch_size=64 is larger than the training split, which has 50 "
                                         r"examples: choose data.batch_size from 1 to 50, or leave more examples for "
                                         r"training \(data.num_train\)"):
        Seq2SeqDataModule(num_train=50, batch_size=64)
