"""What every image DataModule of the lab shares: loader settings, normalization, the loaders, the splits (a
fixed-seed val_size split or a fold of K-fold cross-validation) with their checks against the data, and the sizes
a model takes from the data (`data_dims`, from lab.contracts.DataFacts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lab.checks import check_choice
from lab.contracts import DataFacts, data_facts

NORMALIZATIONS = ("standard", "symmetric", "none")


class ImageDataModule(DataFacts, LightningDataModule):
    """Base of the image DataModules: subclasses set `classes` and `input_shape` and build the three
    splits in `setup` (`train_set`, `val_set`, `test_set`); images are normalized as `normalize` says."""

    classes: tuple[str, ...] = ()

    def __init__(self, batch_size: int, eval_batch_size: int, num_workers: int, pin_memory: bool, normalize: str,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        super().__init__()
        check_choice("data.normalize", normalize, NORMALIZATIONS)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.normalize, self.augment = normalize, augment
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def dataset_mean_std(self) -> tuple[Any, Any]:
        """The dataset's own mean and std (normalize=standard): numbers, or per-channel tensors (C, 1, 1)."""
        raise NotImplementedError

    @property
    def mean_std(self) -> tuple[Any, Any]:
        """What the images are normalized with: x_model = (x_[0,1] - mean) / std."""
        if self.normalize == "standard":
            return self.dataset_mean_std()
        return (0.5, 0.5) if self.normalize == "symmetric" else (0.0, 1.0)

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)


def check_folds(folds: int | None, fold: int, key: str = "data") -> None:
    """The K-fold settings on their own (before the data is read): folds null (the val_size split) or an integer
    >= 2, and fold an integer from 0 to folds - 1 (left at 0 without folds)."""
    if folds is None:
        if fold not in (0, None):
            raise ValueError(f"{key}.fold={fold!r} is set but {key}.folds is null: a fold is one of the K parts of "
                             f"K-fold cross-validation; set {key}.folds=K (an integer >= 2) too, or leave "
                             f"{key}.fold=0 for the usual {key}.val_size split.")
        return
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"{key}.folds={folds!r} is not valid: it must be an integer >= 2 (the number of parts the "
                         f"training data is split into), or null for the usual {key}.val_size split.")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"{key}.fold={fold!r} is not valid: with {key}.folds={folds} it must be an integer from 0 "
                         f"to {folds - 1}.")


def val_count(val_size: float, n: int, key: str = "data.val_size") -> int:
    """How many of n examples `val_size` sends to validation: a count (an integer), or a fraction in (0, 1);
    ValueError naming the valid range unless it leaves at least one example on each side."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)) or val_size <= 0 or (
            val_size >= 1 and val_size != int(val_size)):
        raise ValueError(f"{key}={val_size!r} is not valid: it must be a count of examples (an integer from 1 to "
                         f"{n - 1}) or a fraction between 0 and 1 of the {n} examples.")
    count = round(val_size * n) if val_size < 1 else int(val_size)
    if not 0 < count < n:
        what = (f"{val_size} of the {n} examples is {count}" if val_size < 1 else
                f"the data has {n} examples to split")
        raise ValueError(f"{key}={val_size!r} is not valid: {what}, and validation and training each need at "
                         f"least one; choose a count from 1 to {n - 1} or a fraction from {1 / n:.3g} to "
                         f"{(n - 1) / n:.3g}.")
    return count


def train_val_indices(n: int, val_size: float, folds: int | None, fold: int, seed: int,
                      targets: torch.Tensor | None = None, key: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of n examples: fold `fold` of K-fold cross-validation when `folds` is set (stratified
    by `targets` when given), else a fixed-seed split of `val_size` (a count or a fraction) examples."""
    if folds is None:
        return split_indices(n, val_count(val_size, n, f"{key}.val_size"), seed, f"{key}.val_size")
    return fold_indices(n, folds, fold, seed, targets, key)


def check_batch_size(batch_size: int, n_train: int, key: str = "data", sized_by: tuple[str, ...] = ("val_size",
                                                                                                  "folds")) -> None:
    """A training batch cannot hold more examples than the training split has (it would silently be the whole
    split, one step per epoch): ValueError naming both numbers. `sized_by`: the keys that size the split."""
    if batch_size > n_train:
        keys = ", ".join(f"{key}.{k}" for k in sized_by)
        raise ValueError(f"{key}.batch_size={batch_size} is larger than the training split, which has {n_train} "
                         f"examples: choose {key}.batch_size from 1 to {n_train}, or leave more examples for "
                         f"training ({keys}).")


def split_indices(n: int, val_size: int, seed: int, key: str = "data.val_size") -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of a fixed-seed split of n examples."""
    if not 0 < val_size < n:
        raise ValueError(f"{key}={val_size} must be between 1 and {n - 1} (the training set has {n} examples).")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


def fold_indices(n: int, folds: int, fold: int, seed: int, targets: torch.Tensor | None = None,
                 key: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of fold `fold` of a fixed-seed K-fold split of n examples: the K validation folds
    partition the examples; stratified (each fold keeps the class proportions) when `targets` are given."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"{key}.folds={folds!r} is not valid: it must be an integer from 2 to {n} (the number of "
                         "examples to split).")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"{key}.fold={fold!r} is not valid: with {key}.folds={folds} it must be an integer from 0 "
                         f"to {folds - 1}.")
    if targets is not None:
        counts = torch.bincount(targets.long())
        smallest = int(counts[counts > 0].min())
        if folds > smallest:
            raise ValueError(f"{key}.folds={folds} is more than the smallest class has examples ({smallest}): a "
                             f"stratified split needs every class in every fold; choose {key}.folds <= {smallest}.")
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        splits = splitter.split(torch.zeros(n, 1).numpy(), targets.numpy())
    else:
        splits = KFold(folds, shuffle=True, random_state=seed).split(torch.zeros(n, 1).numpy())
    train, val = list(splits)[fold]
    return torch.as_tensor(train, dtype=torch.long), torch.as_tensor(val, dtype=torch.long)


def data_dims(datamodule: LightningDataModule) -> dict[str, Any]:
    """The values a model's null keys take from the data (lab.data_model_runner.fill_from_data): lab.contracts.DataFacts.dims
    of a data module with the mixin; none for one without (its model's keys are then set in the config)."""
    return data_facts(datamodule).dims()
