"""data/augment=noise: Gaussian pixel noise of the configured std on the uint8 training images only."""

import math

import pytest
import torch

from helpers import make_cfg
from lab.instantiate import instantiate


def expected_std(sigma: float) -> float:
    """Pixel-level std of N(0, s^2) noise (s = 255 sigma) truncated toward zero to whole levels, as torchvision
    adds it to uint8 images: E[(X - sign(X) U)^2] = s^2 - 2 E|X| E[U] + E[U^2], U ~ U(0, 1) the fraction cut."""
    s = 255 * sigma
    return math.sqrt(s * s - s * math.sqrt(2 / math.pi) + 1 / 3)


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_noise_preset_has_the_configured_std(sigma, tmp_path):
    cfg = make_cfg(["data/augment=noise", f"data.augment.sigma={sigma}"], tmp_path, None)
    noise = instantiate(cfg.data.augment, "data.augment")
    torch.manual_seed(0)
    grey = torch.full((1, 300, 300), 128, dtype=torch.uint8)  # mid-grey: clipping at 0 / 255 is > 5 sigma away
    out = noise(grey)
    assert out.dtype == torch.uint8 and out.shape == grey.shape
    d = out.float() - 128
    assert abs(d.std().item() - expected_std(sigma)) < 0.01 * 255 * sigma  # 90,000 draws: ~0.2 % sampling error
    assert abs(d.std().item() / (255 * sigma) - 1) < 0.05  # the configured std, up to the rounding to levels
    assert abs(d.mean().item()) < 0.02 * 255 * sigma


def test_noise_reaches_training_images_only(tmp_path, data_dir):
    cfg = make_cfg(["data=mnist", "data/augment=noise", "data.augment.sigma=0.1"], tmp_path, data_dir)
    dm = instantiate(cfg.data, "data")
    dm.setup("fit")
    dm.setup("test")
    assert type(dm.train_set.transform).__name__ == "GaussianNoise" and dm.train_set.transform.sigma == 0.1
    torch.manual_seed(0)
    a, b = dm.train_set[0][0], dm.train_set[0][0]
    assert not torch.equal(a, b)  # fresh noise each time the image is read
    # in the model's units ((x / 255 - mean) / std) a step of one level is 1 / (255 std): the noise is whole levels
    levels = (a - b) * 255 * dm.std
    assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() > 10
    assert dm.val_set.transform is None and dm.test_set.transform is None
    assert torch.equal(dm.val_set[0][0], dm.val_set[0][0]) and torch.equal(dm.test_set[0][0], dm.test_set[0][0])
