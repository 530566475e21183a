"""A user's own data: an image folder (two classes, RGB, 32x32, written here) with classifiers, a VAE and a
GAN; torchvision's dataset classes by name; sizes taken from the data; clear errors for missing data."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SMOKE, build, make_cfg, write_image_folder
from lab.data import ImageFolderDataModule, TorchvisionDataModule
from lab.data_model_runner import fill_from_data
from lab.errors import ConfigError
from lab.run import run


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("images")
    return write_image_folder(base / "train", 40, 0), write_image_folder(base / "test", 10, 1)


TRAINER = [o for o in SMOKE if not o.startswith("data.")]  # the user's data modules have no MNIST-file checks


def folder_cfg(overrides, tmp_path, folders):
    train, test = folders
    return make_cfg([*TRAINER, "data=image_folder", f"data.root={train}", f"data.test_root={test}", "data.batch_size=16",
                     "data.eval_batch_size=20", "data.val_size=0.2", *overrides], tmp_path, None, smoke=False)


def test_image_folder_reads_classes_shapes_and_a_fixed_split(folders):
    train, test = folders
    dm = ImageFolderDataModule(str(train), test_root=str(test), val_size=0.25)
    dm.setup("fit")
    assert dm.classes == ("blue", "red") and dm.input_shape == (3, 32, 32)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (60, 20, 20)
    again = ImageFolderDataModule(str(train), val_size=0.25)
    again.setup("fit")
    assert again.val_set.base.indices == dm.val_set.base.indices  # the split_seed fixes the split
    x, y = dm.train_set[0]
    # normalize=standard: per-channel statistics of the training images, so each channel is ~N(0, 1)
    xs = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    assert xs.mean((0, 2, 3)).abs().max() < 0.2 and (xs.std((0, 2, 3)) - 1).abs().max() < 0.2
    grey = ImageFolderDataModule(str(train), grayscale=True, image_size=16)
    assert grey.input_shape == (1, 16, 16)


@pytest.mark.parametrize("backbone", ["cnn", "resnet"])
def test_classifiers_take_their_sizes_from_an_image_folder(backbone, folders, tmp_path):
    cfg = folder_cfg([f"model/backbone={backbone}", "trainer.max_epochs=4", "trainer.limit_train_batches=null",
                      "trainer.limit_val_batches=null", "trainer.limit_test_batches=null"], tmp_path, folders)
    metrics = run(cfg)
    assert cfg.model.num_classes == 2 and cfg.model.backbone.in_channels == 3  # filled from the data
    assert cfg.model.class_names == ["blue", "red"]
    assert metrics["test/acc"] > 0.9  # red vs blue; chance is 0.5


def test_a_vae_and_a_gan_on_an_image_folder_skip_the_mnist_quality_metrics(folders, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lab"):
        vae = run(folder_cfg(["experiment=vae_mnist", "model.iw_samples=4"], tmp_path / "vae", folders))
        gan = run(folder_cfg(["experiment=gan_mnist", "model.val_samples=20", "model.test_samples=20"],
                             tmp_path / "gan", folders))
    skipped = [r.getMessage() for r in caplog.records if "are skipped" in r.getMessage()]
    assert len(skipped) == 2 and all("takes 1x28x28 images and the data gives 3x32x32" in m for m in skipped)
    assert np.isfinite(vae["test/nelbo"]) and "test/fid" not in vae
    assert np.isfinite(gan["train/g_loss"]) and "test/fid" not in gan
    assert (tmp_path / "gan" / "logs" / "gan_mnist" / "runs" / "run" / "media" / "samples_epoch000.png").is_file()


def test_torchvision_dataset_by_name(data_dir, tmp_path):
    cfg = make_cfg([*TRAINER, "data=torchvision", "data.name=MNIST", "data.val_size=100", "data.download=false",
                    "trainer.max_epochs=2", "trainer.limit_train_batches=null"], tmp_path, data_dir, smoke=False)
    with_dims = build(cfg)
    assert with_dims.datamodule.input_shape == (1, 28, 28) and cfg.model.num_classes == 10
    metrics = run(cfg)
    assert metrics["test/acc"] > 0.5  # the synthetic digits are learnable; chance is 0.1


def test_torchvision_errors_say_what_is_valid_and_where_files_go(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="data.name='CIFAR11' is not a torchvision.*CIFAR10.*KMNIST"):
        TorchvisionDataModule("CIFAR11")
    dm = TorchvisionDataModule("KMNIST", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match="not in data.data_dir=.*data.download=false.*Put the files where"):
        dm.prepare_data()

    def offline(root: str, train: bool = True, download: bool = False):  # a dataset class without network
        if download:
            raise OSError("network unreachable")
        raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr("lab.data.folder.dataset_class", lambda name: offline)
    cfg = make_cfg([*TRAINER, "data=torchvision", "data.name=KMNIST"], tmp_path, tmp_path / "empty", smoke=False)
    with pytest.raises(ConfigError, match="the download failed: OSError: network unreachable"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_required_keys_and_missing_folders_fail_before_anything_is_built(tmp_path):
    with pytest.raises(ConfigError, match="data.root: required and not set.*data.root=<value>"):
        run(make_cfg([*TRAINER, "data=image_folder"], tmp_path, None, smoke=False))
    with pytest.raises(ConfigError, match="data.root='/no/such/dir' is not a folder"):
        run(make_cfg([*TRAINER, "data=image_folder", "data.root=/no/such/dir"], tmp_path, None, smoke=False))
    assert not Path(tmp_path / "logs").exists() or not list(Path(tmp_path / "logs").glob("**/checkpoints"))


def test_a_key_the_data_cannot_fill_is_named():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"_target_": "x.Model", "backbone": {"_target_": "x.RNN", "input_size": None}})
    with pytest.raises(ConfigError, match="model.backbone.input_size is null.*does not give it.*in_channels=3"):
        fill_from_data(node, {"in_channels": 3, "image_size": 32, "input_size": None}, "model")
    node.backbone.input_size = 5
    fill_from_data(node, {"input_size": 28}, "model")  # a value given is kept
    assert node.backbone.input_size == 5
