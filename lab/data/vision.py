"""Lightning DataModules for MNIST, Fashion-MNIST and sequential (row-by-row) MNIST."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch.utils.data import Dataset

from lab.checks import check_number
from lab.data.base import ImageDataModule, split_indices
from lab.data.fetch import ensure


class ImageTensorDataset(Dataset):
    """uint8 images held in memory; augmentation runs on uint8 (so padding is true black), then
    scaling to [0, 1] and (x - mean) / std. `as_sequence` returns (rows, columns) instead of (1, H, W)."""

    def __init__(
        self,
        images: torch.Tensor,  # (N, H, W) uint8
        targets: torch.Tensor,  # (N,) int64
        mean: float,
        std: float,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        as_sequence: bool = False,
    ) -> None:
        self.images, self.targets = images, targets
        self.mean, self.std = mean, std
        self.transform, self.as_sequence = transform, as_sequence

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].unsqueeze(0)  # (1, H, W) uint8
        if self.transform is not None:
            x = self.transform(x)
        x = (x.float() / 255.0 - self.mean) / self.std
        if self.as_sequence:
            x = x.squeeze(0)  # (H, W): H time steps of W features
        return x, self.targets[i]


def per_class_subset(targets: torch.Tensor, indices: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The first n of each class among `indices` in a fixed-seed shuffle: the same subset for every run
    with that seed (data.labels_per_class); sorted, so loaders see them in dataset order before shuffling."""
    perm = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed + 1))]
    picked = []
    for c in torch.unique(targets[indices]).tolist():
        of_c = perm[targets[perm] == c]
        if len(of_c) < n:
            raise ValueError(f"data.labels_per_class={n} is more than class {c} has in the training split "
                             f"({len(of_c)}); choose at most {len(of_c)}.")
        picked.append(of_c[:n])
    return torch.cat(picked).sort().values


class MNISTDataModule(ImageDataModule):
    """MNIST: a fixed-seed train/val split of the official train set, and the official test set."""

    dataset_name = "mnist"
    dataset_cls = torchvision.datasets.MNIST
    mean, std = 0.1307, 0.3081
    classes = tuple(str(i) for i in range(10))
    as_sequence = False

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 12345,
        num_workers: int = 0,
        pin_memory: bool = False,
        normalize: str = "standard",
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        verify: bool = True,
        labels_per_class: int | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, normalize, augment)
        self.save_hyperparameters(ignore=["augment"], logger=False)
        if labels_per_class is not None:
            check_number("data.labels_per_class", labels_per_class, 1, integer=True, strict=False)
        self.data_dir = str(data_dir)
        self.val_size, self.split_seed, self.verify = val_size, split_seed, verify
        self.labels_per_class = labels_per_class

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (28, 28) if self.as_sequence else (1, 28, 28)

    def dataset_mean_std(self) -> tuple[float, float]:
        return self.mean, self.std

    def prepare_data(self) -> None:
        ensure(self.dataset_name, self.data_dir, verify=self.verify)

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.dataset_cls(self.data_dir, train=train, download=False)
        return ds.data, ds.targets

    def _dataset(self, images: torch.Tensor, targets: torch.Tensor, train: bool) -> ImageTensorDataset:
        return ImageTensorDataset(images, targets, *self.mean_std, self.augment if train else None, self.as_sequence)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit", "validate"):
            images, targets = self._load(train=True)
            train_idx, val_idx = split_indices(len(targets), self.val_size, self.split_seed)
            if self.labels_per_class is not None:
                train_idx = per_class_subset(targets, train_idx, self.labels_per_class, self.split_seed)
            self.train_set = self._dataset(images[train_idx], targets[train_idx], train=True)
            self.val_set = self._dataset(images[val_idx], targets[val_idx], train=False)
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = self._dataset(*self._load(train=False), train=False)


class FashionMNISTDataModule(MNISTDataModule):
    dataset_name = "fashion_mnist"
    dataset_cls = torchvision.datasets.FashionMNIST
    mean, std = 0.2860, 0.3530
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class SeqMNISTDataModule(MNISTDataModule):
    """MNIST read row by row: each image is a sequence of 28 steps of 28 pixels."""

    dataset_name = "seq_mnist"
    as_sequence = True
