"""Every generative experiment end to end through run(cfg), shrunk, on synthetic data."""

import math
from pathlib import Path

import pytest

from generative.gan import GAN
from generative.vae import VAE
from helpers import experiments_with, make_cfg
from lab.errors import ConfigError
from lab.run import run

GANS = experiments_with("model", GAN)
VAES = experiments_with("model", VAE)
GAN_SHRINK = ["model.val_samples=100", "model.test_samples=100", "trainer.limit_train_batches=5"]  # wgan: n_critic 5
VAE_SHRINK = ["model.iw_samples=20", "model.iw_chunk=500", "model.quality_samples=100"]
QUALITY = ("test/fid", "test/fid_floor", "test/classes_covered", "test/kl_uniform", "test/confidence")


@pytest.mark.parametrize("experiment", GANS)
def test_gan_experiment(experiment, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={experiment}", *GAN_SHRINK], tmp_path, data_dir)
    metrics = run(cfg)
    for key in (*QUALITY, "val/fid", "train/d_loss", "train/g_loss"):
        assert key in metrics and math.isfinite(metrics[key]), key
    out = Path(cfg.paths.output_dir)
    from PIL import Image

    # 10 x 10 digits of 28 + 2 pixels of padding (+ 2 at the edge), at 2x scale
    assert Image.open(out / "media" / "samples_epoch000.png").size == (2 * (10 * 30 + 2),) * 2
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("experiment", VAES)
def test_vae_experiment(experiment, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={experiment}", *VAE_SHRINK], tmp_path, data_dir)
    metrics = run(cfg)
    for key in (*QUALITY, "test/nelbo", "test/nll_iw", "val/nelbo", "train/loss"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["test/nll_iw"] <= metrics["test/nelbo"] + 5.0  # k = 20 bound, same test images
    media = Path(cfg.paths.output_dir) / "media"
    for name in ("samples", "reconstructions", "interpolations"):
        assert (media / f"{name}_epoch000.png").is_file(), name


def test_vae_with_a_2d_latent_plots_the_manifold(tmp_path, data_dir):
    cfg = make_cfg(["experiment=vae_mnist", "model.latent_dim=2", *VAE_SHRINK], tmp_path, data_dir)
    run(cfg)
    assert (Path(cfg.paths.output_dir) / "media" / "latent_manifold_epoch000.png").is_file()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["experiment=vae_mnist", "model.latent_dim=0"], "model.latent_dim=0"),
        (["experiment=gan_mnist", "model.generator.latent_dim=-4"], "model.generator.latent_dim=-4"),
        (["experiment=gan_mnist", "model.loss=lsgan"], "model.loss='lsgan'.*non_saturating, hinge, wgan_gp"),
        (["experiment=gan_mnist", "model.generator.image_size=32", "model.discriminator.image_size=32"],
         "data gives images of shape \\(1, 28, 28\\).*generator makes \\(1, 32, 32\\)"),
        (["experiment=conv_vae_mnist", "model.encoder.image_size=32"], "expects \\(1, 32, 32\\)"),
        (["experiment=vae_mnist", "data.normalize=standard"], "data.normalize='standard'.*data.normalize=none"),
        (["experiment=gan_mnist", "model.quality_dataset=cifar10"], "model.quality_dataset='cifar10'"),
    ],
)
def test_bad_generative_config_fails_before_training(overrides, match, tmp_path, data_dir):
    cfg = make_cfg(overrides, tmp_path, data_dir)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_gan_sample_grid_is_logged_to_wandb(tmp_path, data_dir):
    from lab.loggers import read_wandb_records

    cfg = make_cfg(["experiment=gan_mnist", "logger=wandb", *GAN_SHRINK], tmp_path, data_dir)
    run(cfg)
    (run_dir,) = Path(cfg.paths.output_dir).glob("wandb/offline-run-*")
    images = [r["history"]["item"] for r in read_wandb_records(run_dir)
              if r["type"] == "history" and "val/samples._type" in r["history"]["item"]]
    assert images and images[0]["val/samples._type"] == "images/separated"
    assert list(run_dir.glob("files/media/images/val/samples_*.png"))


@pytest.mark.parametrize("experiment,shrink", [("gan_mnist", GAN_SHRINK), ("vae_mnist", VAE_SHRINK)])
def test_generative_checkpoint_evaluates_without_training(experiment, shrink, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={experiment}", *shrink, "test=false"], tmp_path, data_dir)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    evaluated = run(make_cfg([f"experiment={experiment}", *shrink, "mode=eval", f"ckpt_path={ckpt}"],
                             tmp_path / "eval", data_dir))
    for key in QUALITY:
        assert math.isfinite(evaluated[key]), key
    assert not any(k.startswith("train/") for k in evaluated)
