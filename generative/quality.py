"""Sample quality under a classifier trained by this lab (Inception weights cannot be downloaded here).

- FID: torchmetrics' FrechetInceptionDistance with the classifier's penultimate-layer features.
- Floor: the same FID between real train and real test images, reported beside every FID.
- Mode coverage: class histogram of samples under the classifier: classes covered, KL to uniform,
  mean confidence (max softmax).

The classifiers live in generative/assets/classifier_<dataset>.pt and are re-created with
`python scripts/make_fid_classifier.py <dataset>`. The data sets they exist for, with their image shape and
classes, are the lab's image DataModules (lab.data.vision.IMAGE_DATASETS): one table, there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision.ops import FrozenBatchNorm2d

from lab.checks import check_choice
from lab.contracts import data_facts
from lab.data.base import ImageDataModule
from lab.data.vision import IMAGE_DATASETS, ImageTensorDataset, MNISTDataModule

log = logging.getLogger("lab")
ASSETS = Path(__file__).resolve().parent / "assets"
DATASETS = tuple(IMAGE_DATASETS)  # a quality classifier per image data set of the lab


def dataset_module(dataset: str) -> type[MNISTDataModule]:
    """The DataModule class of `dataset` (model.quality_dataset): its classes, image_shape, mean and std."""
    check_choice("model.quality_dataset", dataset, DATASETS)
    return IMAGE_DATASETS[dataset]


def classifier_path(dataset: str) -> Path:
    dataset_module(dataset)
    return ASSETS / f"classifier_{dataset}.pt"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace each BatchNorm2d by torchvision's FrozenBatchNorm2d (its eval-mode function, running statistics
    fixed). A frozen network is then no `_BatchNorm`, so DDP's `sync_batchnorm` leaves it alone instead of making
    SyncBatchNorm layers that would want trainable weights."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter and buffer of `module` into a non-persistent buffer: `.to(device)` and DDP's
    module moves still carry them, but no state_dict (so no checkpoint) holds them and no optimizer sees them."""
    for sub in module.modules():
        tensors = {**dict(sub.named_parameters(recurse=False)), **dict(sub.named_buffers(recurse=False))}
        for name, t in tensors.items():
            delattr(sub, name)
            sub.register_buffer(name, t.detach().requires_grad_(False), persistent=False)
    return module


class ClassifierFeatures(nn.Module):
    """Frozen lab classifier: images in [0, 1], (B, 1, 28, 28) -> penultimate features (B, num_features).
    Its weights are non-persistent buffers (`freeze_as_buffers`): they move with the model that holds it and
    stay out of that model's checkpoints."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, mean: float, std: float) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.mean, self.std = mean, std
        self.num_features = backbone.out_features
        freeze_as_buffers(freeze_batchnorm(self))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        # It follows its owner's train/eval mode like any child (Lightning warns of children left in eval mode
        # at the start of training), but always scores in eval mode: dropout off, BatchNorm's running statistics.
        mode = self.training
        self.train(False)
        try:
            return self.backbone((x01.to(self.head.weight.dtype) - self.mean) / self.std)
        finally:
            self.train(mode)

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


class ClassCoverage(Metric):
    """Class histogram and summed confidence (max softmax) of generated images under the classifier.
    A torchmetrics Metric, so DDP processes' counts add up at `compute` (and DDP never broadcasts them)."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("class_counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confidence_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor) -> None:
        conf, pred = logits.float().softmax(-1).max(-1)
        self.class_counts += torch.bincount(pred, minlength=self.num_classes)
        self.confidence_sum += conf.double().sum()

    def compute(self) -> dict[str, float]:
        n = int(self.class_counts.sum())
        return {**coverage(self.class_counts.double() / max(n, 1)), "confidence": float(self.confidence_sum / max(n, 1))}


class SampleQuality(nn.Module):
    """Accumulates real and generated images (in [0, 1]) and computes FID and mode-coverage figures.

    A child module of the GAN or VAE that uses it, so it moves with it (`.to`, the Trainer, DDP); it holds no
    persistent state, so checkpoints never contain it."""

    def __init__(self, dataset: str = "mnist") -> None:
        super().__init__()
        self.features = ClassifierFeatures.load(dataset)
        self.fid = FrechetInceptionDistance(feature=self.features, reset_real_features=False)
        self.coverage = ClassCoverage(len(dataset_module(dataset).classes))

    def update_real(self, x01: torch.Tensor) -> None:
        self.fid.update(x01, real=True)

    def update_fake(self, x01: torch.Tensor) -> None:
        self.fid.update(x01, real=False)
        self.coverage.update(self.features.logits(x01))

    def has_real(self) -> bool:
        return int(self.fid.real_features_num_samples) > 1

    def reset_fake(self) -> None:
        self.fid.reset()  # keeps the real statistics (reset_real_features=False)
        self.coverage.reset()

    def reset_all(self) -> None:
        self.fid.reset_real_features = True
        self.fid.reset()
        self.fid.reset_real_features = False
        self.coverage.reset()

    def compute(self) -> dict[str, float]:
        """FID and coverage over every DDP process's images (torchmetrics syncs the states)."""
        return {"fid": float(self.fid.compute()), **self.coverage.compute()}


class QualityMixin:
    """What a generative LightningModule (GAN, VAE) shares to score its samples: a `SampleQuality` child
    (`self.quality`, None when skipped), real images collected from the loader, and figures of n samples.
    Under DDP every process generates its share of the n samples; the figures cover all of them."""

    quality: SampleQuality | None
    quality_dataset: str | None

    def init_quality(self, quality_dataset: str | None) -> None:
        """In __init__: load the classifier now (a missing one fails before training)."""
        self.quality_dataset = quality_dataset
        self.quality = SampleQuality(quality_dataset) if quality_dataset else None
        self._ignore_quality_in_ddp()

    def check_quality_data(self, datamodule) -> None:
        """In check_data: drop the figures (one log line) when the data's images do not suit the classifier."""
        self.quality_dataset = quality_dataset_for(datamodule, self.quality_dataset)
        if self.quality_dataset is None:
            self.quality = None
            self._ignore_quality_in_ddp()

    def _ignore_quality_in_ddp(self) -> None:
        # DDP broadcasts every buffer from rank 0 at each forward: the referee's frozen weights need not travel.
        names = [f"quality.{n}" for n, _ in self.quality.named_buffers()] if self.quality is not None else []
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, names)

    def quality_real(self, x01: torch.Tensor) -> None:
        if self.quality is not None:
            self.quality.update_real(x01)

    @torch.no_grad()
    def quality_figures(self, sample: Callable[[int], torch.Tensor], n: int, floor: bool = False) -> dict[str, float]:
        """FID and coverage of n samples (`sample(k)`: k images in [0, 1]) against the real images collected
        so far, then forget the samples; `floor` adds the FID between real train and test images. {} if none."""
        quality = self.quality
        if quality is None or not quality.has_real():
            return {}
        share = math.ceil(n / self.trainer.world_size) if self._trainer is not None else n
        done = 0
        while done < share:
            k = min(1000, share - done)
            quality.update_fake(sample(k))
            done += k
        figures = quality.compute()
        quality.reset_fake()
        if floor:
            figures["fid_floor"] = fid_floor_from_datamodule(quality, self.trainer.datamodule, n, self.device)
        return figures


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
    if not isinstance(datamodule.train_set, ImageTensorDataset):  # only the lab's in-memory sets hold raw pixels
        return float("nan")
    train = datamodule.train_set.images[:n].unsqueeze(1).float().div(255).to(device)
    test = datamodule.test_set.images[:n].unsqueeze(1).float().div(255).to(device)
    return frechet_floor(quality, train, test)


def quality_dataset_for(datamodule, quality_dataset: str | None) -> str | None:
    """`quality_dataset`, or None (with one log line) when the data's images are not what its classifier takes
    (the images of that data set): FID and coverage then are skipped, and nothing else changes."""
    if quality_dataset is None:
        return None
    expected = dataset_module(quality_dataset).image_shape
    given = tuple(data_facts(datamodule).input_shape) or expected
    if given == expected:
        return quality_dataset
    log.warning("model.quality_dataset=%s: its classifier takes %s images and the data gives %s, so FID and "
                "mode coverage are skipped (model.quality_dataset=null says so without this line).",
                quality_dataset, "x".join(map(str, expected)), "x".join(map(str, given)))
    return None


def check_image_data(datamodule, normalize: str, why: str, shape: tuple[int, ...], shape_keys: str, made: str) -> None:
    """Before training: the data's normalization and image shape must be what the generative model needs.
    `made` says what the model does with that shape ("expects", "the generator makes")."""
    if isinstance(datamodule, ImageDataModule) and datamodule.normalize != normalize:
        raise ValueError(f"data.normalize={datamodule.normalize!r} does not suit {why}; set data.normalize={normalize}.")
    given = tuple(data_facts(datamodule).input_shape) or tuple(shape)
    if given != tuple(shape):
        raise ValueError(f"the data gives images of shape {given} but {made} {tuple(shape)} ({shape_keys}).")
