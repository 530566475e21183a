"""Sample quality under a classifier trained by this lab (Inception weights cannot be downloaded here).

- FID: torchmetrics' FrechetInceptionDistance with the classifier's penultimate-layer features.
- Floor: the same FID between real train and real test images, reported beside every FID.
- Mode coverage: class histogram of samples under the classifier: classes covered, KL to uniform,
  mean confidence (max softmax).

The classifiers live in generative/assets/classifier_<dataset>.pt and are re-created with
`python scripts/make_fid_classifier.py <dataset>`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

log = logging.getLogger("lab")
ASSETS = Path(__file__).resolve().parent / "assets"
DATASETS = ("mnist", "fashion_mnist")


def classifier_path(dataset: str) -> Path:
    if dataset not in DATASETS:
        raise ValueError(f"model.quality_dataset={dataset!r} is not valid; valid choices: {', '.join(DATASETS)}.")
    return ASSETS / f"classifier_{dataset}.pt"


class ClassifierFeatures(nn.Module):
    """Frozen lab classifier: images in [0, 1], (B, 1, 28, 28) -> penultimate features (B, num_features)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, mean: float, std: float) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.mean, self.std = mean, std
        self.num_features = backbone.out_features
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # always frozen, dropout off

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.backbone((x01.float() - self.mean) / self.std)

    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self(x01))

    @classmethod
    def load(cls, dataset: str) -> ClassifierFeatures:
        path = classifier_path(dataset)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; create it with `python scripts/make_fid_classifier.py {dataset}`.")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        backbone = hydra.utils.instantiate(blob["backbone"])
        head = nn.Linear(backbone.out_features, blob["num_classes"])
        backbone.load_state_dict({k: v.float() for k, v in blob["backbone_state"].items()})
        head.load_state_dict({k: v.float() for k, v in blob["head_state"].items()})
        return cls(backbone, head, blob["mean"], blob["std"])


class SampleQuality(nn.Module):
    """Accumulates real and generated images (in [0, 1]) and computes FID and mode-coverage figures."""

    def __init__(self, dataset: str = "mnist", num_classes: int = 10) -> None:
        super().__init__()
        self.features = ClassifierFeatures.load(dataset)
        self.fid = FrechetInceptionDistance(feature=self.features, reset_real_features=False)
        self.num_classes = num_classes
        self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.long), persistent=False)
        self.register_buffer("confidence_sum", torch.zeros((), dtype=torch.float64), persistent=False)

    def update_real(self, x01: torch.Tensor) -> None:
        self.fid.update(x01, real=True)

    def update_fake(self, x01: torch.Tensor) -> None:
        self.fid.update(x01, real=False)
        probs = self.features.logits(x01).softmax(-1)
        conf, pred = probs.max(-1)
        self.class_counts += torch.bincount(pred, minlength=self.num_classes)
        self.confidence_sum += conf.double().sum()

    def has_real(self) -> bool:
        return int(self.fid.real_features_num_samples) > 1

    def reset_fake(self) -> None:
        self.fid.reset()  # keeps the real statistics (reset_real_features=False)
        self.class_counts.zero_()
        self.confidence_sum.zero_()

    def reset_all(self) -> None:
        self.fid.reset_real_features = True
        self.fid.reset()
        self.fid.reset_real_features = False
        self.reset_fake()

    def compute(self) -> dict[str, float]:
        n = int(self.class_counts.sum())
        p = self.class_counts.double() / max(n, 1)
        return {
            "fid": float(self.fid.compute()),
            **coverage(p),
            "confidence": float(self.confidence_sum / max(n, 1)),
        }


def coverage(p: torch.Tensor) -> dict[str, float]:
    """Classes covered (a class counts when it gets at least 1 % of the samples, i.e. a tenth of its
    uniform share with 10 classes) and KL(p || uniform) in nats."""
    k = len(p)
    nz = p[p > 0]
    kl = float((nz * (nz * k).log()).sum())
    return {"classes_covered": float((p >= 0.1 / k).sum()), "kl_uniform": kl}


def frechet_floor(quality: SampleQuality, real_a: torch.Tensor, real_b: torch.Tensor, batch_size: int = 1000) -> float:
    """FID between two sets of real images (e.g. train vs test) with the same feature extractor."""
    fid = FrechetInceptionDistance(feature=quality.features, reset_real_features=True).to(real_a.device)
    for i in range(0, len(real_a), batch_size):
        fid.update(real_a[i : i + batch_size], real=True)
    for i in range(0, len(real_b), batch_size):
        fid.update(real_b[i : i + batch_size], real=False)
    value = float(fid.compute())
    return value if math.isfinite(value) else float("nan")


def fid_floor_from_datamodule(quality: SampleQuality, datamodule, n: int, device: torch.device) -> float:
    """The floor for a run: FID between n real training images and n real test images."""
    if datamodule is None:
        return float("nan")
    if datamodule.train_set is None:
        datamodule.setup("fit")
    if datamodule.test_set is None:
        datamodule.setup("test")
    if not hasattr(datamodule.train_set, "images"):  # only the lab's in-memory image sets hold raw pixels
        return float("nan")
    train = datamodule.train_set.images[:n].unsqueeze(1).float().div(255).to(device)
    test = datamodule.test_set.images[:n].unsqueeze(1).float().div(255).to(device)
    return frechet_floor(quality, train, test)


CLASSIFIER_SHAPE = (1, 28, 28)  # what the lab's quality classifiers take


def quality_dataset_for(datamodule, quality_dataset: str | None) -> str | None:
    """`quality_dataset`, or None (with one log line) when the data's images are not what its classifier takes:
    FID and coverage then are skipped, and nothing else changes."""
    given = tuple(getattr(datamodule, "input_shape", CLASSIFIER_SHAPE))
    if quality_dataset is None or given == CLASSIFIER_SHAPE:
        return quality_dataset
    log.warning("model.quality_dataset=%s: its classifier takes %s images and the data gives %s, so FID and "
                "mode coverage are skipped (model.quality_dataset=null says so without this line).",
                quality_dataset, "x".join(map(str, CLASSIFIER_SHAPE)), "x".join(map(str, given)))
    return None


def check_image_data(datamodule, normalize: str, why: str, shape: tuple[int, ...], shape_keys: str, made: str) -> None:
    """Before training: the data's normalization and image shape must be what the generative model needs.
    `made` says what the model does with that shape ("expects", "the generator makes")."""
    if getattr(datamodule, "normalize", normalize) != normalize:
        raise ValueError(f"data.normalize={datamodule.normalize!r} does not suit {why}; set data.normalize={normalize}.")
    given = tuple(getattr(datamodule, "input_shape", shape))
    if given != tuple(shape):
        raise ValueError(f"the data gives images of shape {given} but {made} {tuple(shape)} ({shape_keys}).")
