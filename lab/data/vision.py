"""Lightning DataModules for MNIST, Fashion-MNIST and sequential (row-by-row) MNIST, with a fixed val_size split or
K-fold cross-validation (data.folds, data.fold) of the official training set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset

from lab.checks import check_number
from lab.data.base import ImageDataModule, check_batch_size, check_folds, train_val_indices
from lab.data.fetch import ensure, raw_dir
from lab.data.idx import read_idx


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
                             f"({len(of_c)}); choose data.labels_per_class from 1 to {len(of_c)}.")
        picked.append(of_c[:n])
    return torch.cat(picked).sort().values


class MNISTDataModule(ImageDataModule):
    """MNIST: a fixed-seed train/val split of the official train set (or fold `fold` of `folds`-fold
    cross-validation of it, stratified by class), and the official test set.

    Every data option is checked against the data (its training labels, a small file) when the module is made,
    or, when the files are not there yet, as soon as `prepare_data` has fetched them: before training."""

    dataset_name = "mnist"
    dataset_cls = torchvision.datasets.MNIST
    mean, std = 0.1307, 0.3081
    classes = tuple(str(i) for i in range(10))
    image_shape = (1, 28, 28)  # (C, H, W) of every image
    as_sequence = False

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 5000,
        split_seed: int = 12345,
        num_workers: int = 0,
        pin_memory: bool = False,
        normalize: str = "standard",
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        verify: bool = True,
        labels_per_class: int | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, normalize, augment)
        self.save_hyperparameters(ignore=["augment"], logger=False)
        if labels_per_class is not None:
            check_number("data.labels_per_class", labels_per_class, 1, integer=True, strict=False)
        check_folds(folds, fold)
        if folds is None:  # a count or a fraction; against the number of images once they are read
            check_number("data.val_size", val_size, 0)
        self.data_dir = str(data_dir)
        self.val_size, self.split_seed, self.verify = val_size, split_seed, verify
        self.labels_per_class, self.folds, self.fold = labels_per_class, folds, fold
        self._split: tuple[torch.Tensor, torch.Tensor] | None = None
        try:  # the data's own numbers, when its files are there already (else prepare_data checks, after the fetch)
            self._train_labels()
        except (FileNotFoundError, ValueError):
            pass
        else:
            self.check()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.image_shape[1:] if self.as_sequence else self.image_shape

    def dataset_mean_std(self) -> tuple[float, float]:
        return self.mean, self.std

    def _train_labels(self) -> torch.Tensor:
        """The official train split's labels, read from the raw file (a header and one byte per image)."""
        return torch.from_numpy(read_idx(raw_dir(self.data_dir, self.dataset_name) / "train-labels-idx1-ubyte")
                                .astype(np.int64))

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices into the official train split, made once: the val_size split or the fold, then
        labels_per_class of each class from the training part."""
        if self._split is None:
            targets = self._train_labels()
            train_idx, val_idx = train_val_indices(len(targets), self.val_size, self.folds, self.fold,
                                                   self.split_seed, targets)
            if self.labels_per_class is not None:
                train_idx = per_class_subset(targets, train_idx, self.labels_per_class, self.split_seed)
            self._split = (train_idx, val_idx)
        return self._split

    def check(self) -> None:
        """Every data option against the data: val_size or folds/fold against the number of training images (and
        folds against the smallest class), labels_per_class against each class of the training split,
        batch_size against the training split; ValueError naming the key, its value and the valid range."""
        train_idx, _ = self.split()
        check_batch_size(self.batch_size, len(train_idx), sized_by=("val_size", "folds", "labels_per_class"))

    def prepare_data(self) -> None:
        ensure(self.dataset_name, self.data_dir, verify=self.verify)
        self._split = None  # the files may have been fetched (again) since the module was made
        self.check()

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.dataset_cls(self.data_dir, train=train, download=False)
        return ds.data, ds.targets

    def _dataset(self, images: torch.Tensor, targets: torch.Tensor, train: bool) -> ImageTensorDataset:
        return ImageTensorDataset(images, targets, *self.mean_std, self.augment if train else None, self.as_sequence)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit", "validate"):
            self._split = None  # prepare_data ran in one process only (DDP): every process checks the files it reads
            self.check()
            images, targets = self._load(train=True)
            train_idx, val_idx = self.split()
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


# The image data sets by name (data=<name>): what other parts of the lab need to know of them (the generative
# models' quality classifiers: generative.quality) comes from these classes: classes, image_shape, mean and std.
IMAGE_DATASETS: dict[str, type[MNISTDataModule]] = {m.dataset_name: m for m in (MNISTDataModule, FashionMNISTDataModule)}
