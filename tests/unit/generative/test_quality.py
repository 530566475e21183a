import math

import pytest
import torch
from torch import nn

from generative.quality import (
    DATASETS,
    ClassifierFeatures,
    SampleQuality,
    classifier_path,
    coverage,
    frechet_floor,
)


def test_coverage_known_answers():
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    assert coverage(uniform) == {"classes_covered": 10.0, "kl_uniform": pytest.approx(0.0, abs=1e-12)}
    one = torch.zeros(10, dtype=torch.float64)
    one[3] = 1.0
    figures = coverage(one)
    assert figures["classes_covered"] == 1.0 and figures["kl_uniform"] == pytest.approx(math.log(10))
    half = torch.tensor([0.5, 0.5] + [0.0] * 8, dtype=torch.float64)
    assert coverage(half)["kl_uniform"] == pytest.approx(math.log(5))
    rare = torch.tensor([0.005] + [0.995 / 9] * 9, dtype=torch.float64)  # 0.5 % is below the 1 % threshold
    assert coverage(rare)["classes_covered"] == 9.0


def _features() -> ClassifierFeatures:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    backbone.out_features = 6
    return ClassifierFeatures(backbone, nn.Linear(6, 10), mean=0.0, std=1.0)


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    torch.manual_seed(1)
    quality = SampleQuality.__new__(SampleQuality)
    nn.Module.__init__(quality)
    quality.features = _features()
    a = torch.rand(500, 1, 28, 28)
    assert frechet_floor(quality, a, a) == pytest.approx(0.0, abs=1e-3)
    near = frechet_floor(quality, a, torch.rand(500, 1, 28, 28))
    far = frechet_floor(quality, a, (torch.rand(500, 1, 28, 28) * 0.5 + 0.5))
    assert 0 < near < far


def test_features_are_frozen_and_score_in_eval_mode():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 6))
    backbone.out_features = 6
    f = ClassifierFeatures(backbone, nn.Linear(6, 10), mean=0.0, std=1.0)
    f.train()  # its owner's mode; scoring still has dropout off: the same features every call
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(f(x), f(x))
    assert f.training and not list(f.parameters()) and not f.state_dict()  # non-persistent buffers only
    assert {n for n, _ in f.named_buffers()} == {"backbone.2.weight", "backbone.2.bias", "head.weight", "head.bias"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_shipped_classifiers_load_and_are_small(dataset):
    path = classifier_path(dataset)
    assert path.stat().st_size < 1_000_000
    f = ClassifierFeatures.load(dataset)
    x = torch.rand(4, 1, 28, 28)
    assert f(x).shape == (4, f.num_features) and f.logits(x).shape == (4, 10)
    quality = SampleQuality(dataset)
    quality.update_real(torch.rand(8, 1, 28, 28))
    quality.update_fake(torch.rand(8, 1, 28, 28))
    figures = quality.compute()
    assert set(figures) == {"fid", "classes_covered", "kl_uniform", "confidence"}
    assert 0.1 <= figures["confidence"] <= 1.0


def test_unknown_quality_dataset_lists_choices():
    with pytest.raises(ValueError, match="model.quality_dataset='cifar10'.*mnist, fashion_mnist"):
        classifier_path("cifar10")


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_frozen_referee_computes_what_the_trained_classifier_computes(dataset):
    """Frozen BatchNorm and buffer-held weights change where the weights live, not the function."""
    import hydra

    blob = torch.load(classifier_path(dataset), map_location="cpu", weights_only=True)
    backbone = hydra.utils.instantiate(blob["backbone"])
    backbone.load_state_dict({k: v.float() for k, v in blob["backbone_state"].items()})
    backbone.eval()
    frozen = ClassifierFeatures.load(dataset)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in frozen.modules())
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), backbone((x - blob["mean"]) / blob["std"]), rtol=1e-5, atol=1e-5)


def test_quality_data_sets_are_the_lab_image_data_modules():
    """One table of data sets: the quality classifiers' names, shapes and classes come from lab.data."""
    from generative.quality import dataset_module
    from lab.data import FashionMNISTDataModule, MNISTDataModule

    assert DATASETS == ("mnist", "fashion_mnist")
    assert dataset_module("fashion_mnist") is FashionMNISTDataModule and dataset_module("mnist") is MNISTDataModule
    assert MNISTDataModule.image_shape == (1, 28, 28) and len(FashionMNISTDataModule.classes) == 10
