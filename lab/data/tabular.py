"""Tables for regression: a user's CSV file, or a data set scikit-learn ships on disk (`sklearn:diabetes`)."""

from __future__ import annotations

from lab.contracts import DataFacts

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import TensorDataset

from lab.checks import check_choice, check_number
from lab.data.base import ImageDataModule, fold_indices

log = logging.getLogger("lab")

# Data sets scikit-learn ships with its package (no download), read as `path: sklearn:<name>`.
SKLEARN_TABLES = ("diabetes", "linnerud")
STATISTICS = ("feature_mean", "feature_std", "target_mean", "target_std")  # of the training rows


def read_table(path: str) -> Any:
    """The table at `path` as a pandas DataFrame: a CSV file, or `sklearn:<name>` (features and targets in
    their own units: diabetes unscaled, its target in the column `target`)."""
    import pandas as pd

    if path.startswith("sklearn:"):
        name = path.removeprefix("sklearn:")
        check_choice("data.path", path, tuple(f"sklearn:{n}" for n in SKLEARN_TABLES))
        from sklearn import datasets

        loader = getattr(datasets, f"load_{name}")
        bunch = loader(as_frame=True, scaled=False) if name == "diabetes" else loader(as_frame=True)
        return bunch.frame
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.path={path!r} is not a file; pass a CSV file with a header row (or "
                                f"sklearn:<name>: {', '.join(SKLEARN_TABLES)}).")
    try:
        return pd.read_csv(file)
    except (ValueError, pd.errors.ParserError) as e:
        raise ValueError(f"data.path={path!r} cannot be read as a CSV file: {str(e).splitlines()[0]}") from None


def split_size(key: str, value: float, n: int) -> int:
    """Rows of a split given as a count (an integer >= 1) or a fraction of the n rows (0 < value < 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
            isinstance(value, float) and value >= 1 and not value.is_integer()):
        raise ValueError(f"{key}={value!r} is not valid: it must be a number of rows (an integer >= 1) or a "
                         "fraction of the table (0 < value < 1).")
    return round(value * n) if value < 1 else int(value)


class TabularDataModule(DataFacts, LightningDataModule):
    """Rows of a table: `features` columns in, `target` column(s) out, for regression.

    Splits: a fixed-seed (split_seed) test set of test_size rows, then a validation set of val_size rows (counts,
    or fractions of the table), the rest for training; or, with `folds`, fold `fold` of a K-fold split of the
    non-test rows as the validation set (lab.data.base.fold_indices; val_size is then unused). Features are
    standardized with the mean / std of the training rows only (`standardize`), so nothing of the validation or
    test rows leaks into training; `target_mean` / `target_std` (training rows, `standardize_targets`) are for the
    model, which trains on standardized targets and predicts in the targets' own units. Batches are
    (features (B, F) float32 standardized, targets (B, T) float32 in their own units).
    """

    def __init__(
        self,
        path: str,
        target: str | list[str],
        features: list[str] | None = None,
        val_size: float = 0.15,
        test_size: float = 0.2,
        split_seed: int = 12345,
        folds: int | None = None,
        fold: int = 0,
        standardize: bool = True,
        standardize_targets: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        verify: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.standardize, self.standardize_targets = standardize, standardize_targets
        self.path = str(path)
        table = read_table(self.path)
        self.target_names, self.feature_names = self._columns(table, target, features)
        x, y = self._numbers(table, verify)
        self.x, self.y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        self.train_idx, self.val_idx, self.test_idx = self._split(len(self.y), val_size, test_size, split_seed,
                                                                  folds, fold)
        if batch_size > len(self.train_idx):
            raise ValueError(f"data.batch_size={batch_size} is larger than the training split, which has "
                             f"{len(self.train_idx)} rows: choose data.batch_size from 1 to {len(self.train_idx)}.")
        self.feature_mean, self.feature_std = self._statistics(self.x[self.train_idx], standardize)
        self.target_mean, self.target_std = self._statistics(self.y[self.train_idx], standardize_targets)
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    # ---- reading ------------------------------------------------------------------------------------------------
    def _columns(self, table: Any, target: str | list[str], features: list[str] | None
                 ) -> tuple[list[str], list[str]]:
        columns = [str(c) for c in table.columns]
        table.columns = columns
        targets = [str(t) for t in ([target] if isinstance(target, (str, int)) else target or [])]
        if not targets:
            raise ValueError(f"data.target={target!r} is not valid: name the target column(s) of {self.path}; its "
                             f"columns: {', '.join(columns)}.")
        for key, names in (("data.target", targets), ("data.features", features or [])):
            missing = [str(n) for n in names if str(n) not in columns]
            if missing:
                verb = "is not a column" if len(missing) == 1 else "are not columns"
                raise ValueError(f"{key}: {', '.join(map(repr, missing))} {verb} of {self.path}; its columns: "
                                 f"{', '.join(columns)}.")
        if features is None:
            names = [c for c in columns if c not in targets]
        else:
            names = [str(f) for f in features]
            both = [f for f in names if f in targets]
            if both:
                raise ValueError(f"data.features lists the target column(s) {', '.join(both)}: a model given its "
                                 "target as input learns nothing; leave them out of data.features.")
        for key, given in (("data.target", targets), ("data.features", names)):
            if len(set(given)) != len(given):
                raise ValueError(f"{key}={given} names a column twice.")
        if not names:
            raise ValueError(f"{self.path} has no feature columns besides the target(s) {', '.join(targets)}.")
        return targets, names

    def _numbers(self, table: Any, verify: bool) -> tuple[np.ndarray, np.ndarray]:
        """The feature and target columns as float64 arrays. A cell that is empty or not a number: an error
        naming it (verify=true) or its row dropped, with a warning (verify=false)."""
        import pandas as pd

        used = table[self.feature_names + self.target_names]
        numbers = used.apply(pd.to_numeric, errors="coerce").astype("float64")
        bad = ~np.isfinite(numbers.to_numpy())
        if bad.any():
            rows = bad.any(axis=1)
            if verify:
                r, c = np.argwhere(bad)[0]
                column = used.columns[c]
                raise ValueError(
                    f"{self.path}: {int(rows.sum())} row(s) have an empty or non-numeric value in the columns used, "
                    f"the first in column {column!r} at data row {r + 1} (line {r + 2} of a CSV file): "
                    f"{used.iloc[r, c]!r}. Encode categories as numbers (e.g. one-hot columns), leave such columns "
                    "out with data.features, or set data.verify=false to drop those rows.")
            log.warning("%s: %d of %d rows dropped (an empty or non-numeric value in the columns used; "
                        "data.verify=false).", self.path, int(rows.sum()), len(rows))
            numbers = numbers[~rows]
        return numbers[self.feature_names].to_numpy(), numbers[self.target_names].to_numpy()

    # ---- splits and statistics -----------------------------------------------------------------------------------
    @staticmethod
    def _split(n: int, val_size: float, test_size: float, seed: int, folds: int | None, fold: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_number("data.split_seed", seed, 0, integer=True, strict=False)
        if folds is None and fold not in (0, None):
            raise ValueError(f"data.fold={fold!r} is set but data.folds is null: a fold is one of the K parts of "
                             "K-fold cross-validation; set data.folds=K (an integer >= 2) too, or leave data.fold=0 "
                             "for the data.val_size split.")
        n_test = split_size("data.test_size", test_size, n)
        n_val = 0 if folds is not None else split_size("data.val_size", val_size, n)
        if n_test < 2 or (folds is None and n_val < 2) or n - n_test - n_val < 2:
            raise ValueError(f"data.test_size={test_size}, data.val_size={val_size} leave {n_test} test, {n_val} "
                             f"validation and {n - n_test - n_val} training rows of the table's {n}: each needs at "
                             "least 2 (R2 needs a spread of targets).")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        test, rest = perm[:n_test], perm[n_test:]
        if folds is None:
            return rest[n_val:], rest[:n_val], test
        train, val = fold_indices(len(rest), folds, fold, seed)  # positions within the non-test rows
        return rest[train], rest[val], test

    @staticmethod
    def _statistics(values: torch.Tensor, standardize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column mean and std (ddof 0) of the training rows, as sklearn's StandardScaler fits them (a
        constant column keeps std 1); (0, 1) when not standardizing."""
        if not standardize:
            return torch.zeros(values.shape[1]), torch.ones(values.shape[1])
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(values.double().numpy())
        return torch.as_tensor(scaler.mean_, dtype=torch.float32), torch.as_tensor(scaler.scale_, dtype=torch.float32)

    # ---- what models and modes read -----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int]:
        return (len(self.feature_names),)

    @property
    def num_targets(self) -> int:
        return len(self.target_names)

    def preprocess(self, features: np.ndarray) -> torch.Tensor:
        """Raw feature rows (N, F), columns in `feature_names` order, as the model takes them: float32,
        standardized with the training rows' statistics."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float64), dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"features of shape {tuple(x.shape)}: expected (rows, {len(self.feature_names)}), the "
                             f"columns {', '.join(self.feature_names)}.")
        return (x - self.feature_mean) / self.feature_std

    # ---- Lightning -----------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = (
                TensorDataset(self.preprocess(self.x[i].numpy()), self.y[i])
                for i in (self.train_idx, self.val_idx, self.test_idx))

    # The loaders are the image DataModules' (lab.data.base): the same settings, read from the same attributes
    # (batch_size, eval_batch_size, num_workers, pin_memory and the three splits).
    _loader = ImageDataModule._loader
    train_dataloader = ImageDataModule.train_dataloader
    val_dataloader = ImageDataModule.val_dataloader
    test_dataloader = ImageDataModule.test_dataloader

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the columns and the training rows' statistics, so that a checkpoint is
        evaluated (and its predictions made) with the statistics it was trained with."""
        return {"feature_names": list(self.feature_names), "target_names": list(self.target_names),
                **{k: getattr(self, k).tolist() for k in STATISTICS}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("feature_names", "target_names"):
            if list(state_dict[key]) != list(getattr(self, key)):
                raise ValueError(f"the checkpoint was trained on the {key.split('_')[0]} columns {state_dict[key]}; "
                                 f"data.path={self.path!r} with these settings gives {getattr(self, key)}.")
        for key in STATISTICS:
            setattr(self, key, torch.tensor(state_dict[key], dtype=torch.float32))
        if self.train_set is not None:  # built with this table's own statistics: rebuilt with the checkpoint's
            self.train_set = None
            self.setup()
