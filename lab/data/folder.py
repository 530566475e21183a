"""A user's own images: `data=image_folder` (torchvision ImageFolder layout) and `data=torchvision`
(any of torchvision's dataset classes by name). Images are decoded as they are read (nothing is held in
memory), resized when asked, and go through the same uint8 augmentation and normalization as MNIST's."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2

from lab.checks import check_number, check_positive
from lab.data.base import ImageDataModule, check_batch_size, check_folds, train_val_indices

log = logging.getLogger("lab")

STATS_IMAGES = 500  # training images the per-channel mean and std (normalize=standard) are estimated from
SHAPE_SAMPLES = 16  # evenly spaced images of each split whose shapes `check` compares (decoding them all is slow)
SIZE_CHECKS = 10000  # an image folder's files whose sizes are read (their headers only) when image_size is null


class ImageDataset(Dataset):
    """(image, label) from any dataset whose items are PIL images or image tensors: uint8 (C, H, W) in the
    data's colour mode and size, augmented (uint8), then scaled to [0, 1] and (x - mean) / std."""

    def __init__(self, base: Dataset, grayscale: bool | None, image_size: int | None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, mean: Any = 0.0,
                 std: Any = 1.0) -> None:
        self.base, self.transform, self.mean, self.std = base, transform, mean, std
        steps: list[Any] = [v2.ToImage()]
        if grayscale is not None:  # None: the channels the source gives
            steps.append(v2.Grayscale(1) if grayscale else v2.RGB())
        if image_size is not None:
            steps.append(v2.Resize((image_size, image_size), antialias=True))
        self.to_uint8 = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.base)

    def uint8(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        return self.to_uint8(image).as_subclass(torch.Tensor), int(label)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.uint8(i)
        if self.transform is not None:
            x = self.transform(x)
        return (x.float() / 255.0 - self.mean) / self.std, y


class _SplitImageDataModule(ImageDataModule):
    """A train set split into train/val with a fixed seed (val_size: a count, or a fraction < 1), or fold `fold` of
    `folds`-fold cross-validation of it (stratified by class where the labels can be read without the images),
    and a test set. The options are checked against the data when it is first opened (`check`)."""

    def __init__(self, image_size: int | None, grayscale: bool | None, val_size: float, split_seed: int, batch_size: int,
                 eval_batch_size: int, num_workers: int, pin_memory: bool, normalize: str,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None, folds: int | None, fold: int) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, normalize, augment)
        if image_size is not None:
            check_number("data.image_size", image_size, 1, integer=True, strict=False)
        if not isinstance(grayscale, (bool, type(None))):
            raise ValueError(f"data.grayscale={grayscale!r} is not valid; valid choices: null (the data's own "
                             "channels), true (one channel), false (RGB).")
        check_folds(folds, fold)
        if folds is None:  # a count or a fraction; against the number of images once they are read
            check_positive("data.val_size", val_size)
        self.image_size, self.grayscale = image_size, grayscale
        self.val_size, self.split_seed, self.folds, self.fold = val_size, split_seed, folds, fold
        self._shape: tuple[int, int, int] | None = None
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._bases: tuple[Dataset, Dataset | None] | None = None
        self._split: tuple[torch.Tensor, torch.Tensor] | None = None

    def open_sets(self) -> tuple[Dataset, Dataset | None]:
        """(train set, test set or None) as the source gives them (PIL images or tensors, labels)."""
        raise NotImplementedError

    def base_sets(self) -> tuple[Dataset, Dataset | None]:
        """The source's sets, opened once and checked against the options (`check`) before anything uses them."""
        if self._bases is None:
            self._bases = self.open_sets()
            try:
                self.check()
            except Exception:
                self._bases = self._split = None
                raise
        return self._bases

    def train_targets(self) -> torch.Tensor | None:
        """The training set's labels when the source holds them as a list (`targets` or `labels`), else None."""
        train, _ = self.base_sets()
        for name in ("targets", "labels"):
            labels = getattr(train, name, None)
            if labels is not None:
                t = torch.as_tensor(labels)
                if t.ndim == 1 and len(t) == len(train) and not t.is_floating_point():
                    return t.long()
        return None

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices into the train set, made once: the val_size split or the fold."""
        if self._split is None:
            train, _ = self.base_sets()
            targets = self.train_targets() if self.folds is not None else None
            if self.folds is not None and targets is None:
                log.info("data.folds=%d: the labels cannot be read without decoding every image; the folds are "
                         "not stratified by class", self.folds)
            self._split = train_val_indices(len(train), self.val_size, self.folds, self.fold, self.split_seed, targets)
        return self._split

    def sample_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(which image, its (C, H, W) as the model gets it) for evenly spaced images of the train and test sets:
        what `check` compares. Nothing to compare when image_size and grayscale make every image alike."""
        if self.image_size is not None and self.grayscale is not None:
            return
        train, test = self._bases
        for name, base in (("train", train), ("test", test)):
            if base is None or not len(base):
                continue
            raw = ImageDataset(base, self.grayscale, self.image_size)
            for i in sorted({round(k * (len(base) - 1) / (SHAPE_SAMPLES - 1)) for k in range(SHAPE_SAMPLES)}):
                yield f"{name} image {i}", tuple(raw.uint8(i)[0].shape)

    def check(self) -> None:
        """Every data option against the data: val_size or folds/fold against the number of training images (and
        folds against the smallest class), batch_size against the training split, and, where image_size or
        grayscale leave the images as they are, that they share one size and channel count (a batch needs it);
        ValueError naming the key, its value and the valid range."""
        train_idx, _ = self.split()
        check_batch_size(self.batch_size, len(train_idx))
        first: tuple[str, tuple[int, ...]] | None = None
        for where, shape in self.sample_shapes():
            if first is None:
                first = (where, shape)
                continue
            (a, (c0, *hw0)), (c1, *hw1) = first, shape
            if hw0 != hw1:
                raise ValueError(f"data.image_size=null keeps every image's own size, and the images differ: {a} is "
                                 f"{hw0[0]}x{hw0[1]} and {where} is {hw1[0]}x{hw1[1]} (height x width); set "
                                 f"data.image_size=<n> (an integer >= 1) to resize them all to n x n, e.g. "
                                 f"data.image_size={max(*hw0, *hw1)}.")
            if c0 != c1:
                raise ValueError(f"data.grayscale=null keeps every image's own channels, and they differ: {a} has {c0} "
                                 f"and {where} has {c1}; valid choices: data.grayscale=true (one channel) or false "
                                 "(RGB, three).")

    def _wrap(self, base: Dataset, train: bool) -> ImageDataset:
        mean, std = self.mean_std
        return ImageDataset(base, self.grayscale, self.image_size, self.augment if train else None, mean, std)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self._shape is None:
            first, _ = ImageDataset(self.base_sets()[0], self.grayscale, self.image_size).uint8(0)
            self._shape = tuple(first.shape)
        return self._shape

    def dataset_mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stats is None:  # per channel, from the first STATS_IMAGES training images (fixed order)
            raw = ImageDataset(self.base_sets()[0], self.grayscale, self.image_size)
            xs = torch.stack([raw.uint8(i)[0] for i in range(min(len(raw), STATS_IMAGES))]).float() / 255.0
            self._stats = (xs.mean((0, 2, 3)).view(-1, 1, 1), xs.std((0, 2, 3)).clamp_min(1e-3).view(-1, 1, 1))
        return self._stats

    def setup(self, stage: str | None = None) -> None:
        train_base, test_base = self.base_sets()
        if self.train_set is None:
            train_idx, val_idx = self.split()
            self.train_set = self._wrap(Subset(train_base, train_idx.tolist()), train=True)
            self.val_set = self._wrap(Subset(train_base, val_idx.tolist()), train=False)
        if self.test_set is None:
            # without a test split, the validation split (the fold, with data.folds) doubles as the test split
            if test_base is None:
                log.info("data: no test split given; `test` figures are on the validation split.")
            self.test_set = self._wrap(test_base, train=False) if test_base is not None else self.val_set


class ImageFolderDataModule(_SplitImageDataModule):
    """`root/<class>/<image>` (torchvision ImageFolder: any number of classes, any format PIL reads).

    RGB unless `grayscale`; `image_size` resizes to square (needed when sizes differ); `val_size` of the
    root's images go to validation with a fixed seed (or, with `folds`, fold `fold` of a stratified K-fold split);
    `test_root` (same layout) is the test split. The options are checked against the folder when it is made.
    """

    def __init__(self, root: str, test_root: str | None = None, image_size: int | None = None,
                 grayscale: bool = False, val_size: float = 0.1, split_seed: int = 12345, batch_size: int = 32,
                 eval_batch_size: int = 256, num_workers: int = 0, pin_memory: bool = False,
                 normalize: str = "standard", augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 folds: int | None = None, fold: int = 0) -> None:
        super().__init__(image_size, grayscale, val_size, split_seed, batch_size, eval_batch_size, num_workers,
                         pin_memory, normalize, augment, folds, fold)
        self.save_hyperparameters(ignore=["augment"], logger=False)
        self.root, self.test_root = self._folder("data.root", root), None
        if test_root is not None:
            self.test_root = self._folder("data.test_root", test_root)
        self.classes = tuple(torchvision.datasets.folder.find_classes(self.root)[0])
        if len(self.classes) < 2:
            raise ValueError(f"data.root={root!r} holds {len(self.classes)} class folder(s); a classifier needs at "
                             "least 2 (root/<class>/<image>).")
        self.base_sets()  # the folder is local: its options are checked now, before anything else is built

    @staticmethod
    def _folder(key: str, path: str) -> str:
        if path is None or not Path(path).expanduser().is_dir():
            raise ValueError(f"{key}={path!r} is not a folder; it must hold one sub-folder of images per class "
                             "(torchvision ImageFolder: root/<class>/<image>.png).")
        return str(Path(path).expanduser().resolve())

    def open_sets(self) -> tuple[Dataset, Dataset | None]:
        train = torchvision.datasets.ImageFolder(self.root)
        test = torchvision.datasets.ImageFolder(self.test_root) if self.test_root else None
        if test is not None and test.classes != train.classes:
            raise ValueError(f"data.test_root={self.test_root!r} has classes {test.classes}, data.root has "
                             f"{train.classes}; both need the same class folders.")
        return train, test

    def sample_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        # every image is read as RGB and converted by `grayscale`: only the sizes can differ, and PIL reads a
        # file's size from its header, so (up to SIZE_CHECKS of) every file is compared, not a sample
        if self.image_size is not None:
            return
        channels = 1 if self.grayscale else 3
        for base in self._bases:
            samples = [] if base is None else base.samples
            step = max(1, len(samples) // SIZE_CHECKS)
            for path, _ in samples[::step]:
                with Image.open(path) as img:
                    width, height = img.size
                yield path, (channels, height, width)


class TorchvisionDataModule(_SplitImageDataModule):
    """Any torchvision dataset class by name (`CIFAR10`, `KMNIST`, `EMNIST`, `SVHN`, ...): its train split
    (split into train/val) and its test split, downloaded into `data_dir` when missing and the network
    allows; `kwargs` are passed to the class (e.g. EMNIST's `{split: balanced}`)."""

    def __init__(self, name: str, data_dir: str = "data", kwargs: dict[str, Any] | None = None,
                 image_size: int | None = None, grayscale: bool | None = None, val_size: float = 5000,
                 split_seed: int = 12345, batch_size: int = 128, eval_batch_size: int = 1000, num_workers: int = 0,
                 pin_memory: bool = False, normalize: str = "standard",
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, download: bool = True,
                 folds: int | None = None, fold: int = 0) -> None:
        super().__init__(image_size, grayscale, val_size, split_seed, batch_size, eval_batch_size, num_workers,
                         pin_memory, normalize, augment, folds, fold)
        self.save_hyperparameters(ignore=["augment"], logger=False)
        self.cls = dataset_class(name)
        self.name, self.data_dir, self.kwargs, self.download = name, str(data_dir), dict(kwargs or {}), download

    def _open(self, train: bool) -> Dataset:
        params = inspect.signature(self.cls).parameters
        split = {"train": train} if "train" in params else {"split": "train" if train else "test"}
        kwargs = {**split, **self.kwargs}
        try:
            return self.cls(self.data_dir, download=False, **kwargs)
        except (RuntimeError, FileNotFoundError):
            pass  # not on disk yet
        if not self.download:
            raise FileNotFoundError(self._missing("data.download=false"))
        try:
            return self.cls(self.data_dir, download=True, **kwargs)
        except Exception as e:
            raise FileNotFoundError(self._missing(f"the download failed: {type(e).__name__}: {e}")) from None

    def _missing(self, why: str) -> str:
        return (f"data.name={self.name!r}: its files are not in data.data_dir={self.data_dir!r} and {why}. Put "
                f"the files where torchvision.datasets.{self.name}(root={self.data_dir!r}) looks for them "
                f"(its own download layout, e.g. {self.data_dir}/{self.name}/raw or the archive's folder), or run "
                "where the network allows the download.")

    def prepare_data(self) -> None:
        self.base_sets()

    def open_sets(self) -> tuple[Dataset, Dataset | None]:
        # opened (downloaded if need be) when first used: by the sizes a model takes from the data, or prepare_data
        train = self._open(train=True)
        test = self._open(train=False)
        classes = getattr(train, "classes", None)
        if not classes:
            targets = torch.as_tensor(getattr(train, "targets", getattr(train, "labels", [])))
            classes = [str(i) for i in range(int(targets.max()) + 1)] if len(targets) else []
        self._classes = tuple(str(c) for c in classes)
        return train, test

    @property
    def classes(self) -> tuple[str, ...]:  # known once the data set is open (opened here when first asked)
        self.base_sets()
        return self._classes


def dataset_class(name: str) -> type:
    """torchvision.datasets.<name>, a dataset class with a root folder; ValueError listing them otherwise."""
    names = sorted(n for n, c in vars(torchvision.datasets).items() if inspect.isclass(c)
                   and issubclass(c, torchvision.datasets.VisionDataset) and "root" in inspect.signature(c).parameters
                   and ("train" in inspect.signature(c).parameters or "split" in inspect.signature(c).parameters))
    if name not in names:
        raise ValueError(f"data.name={name!r} is not a torchvision dataset class with train/test splits; valid "
                         f"choices: {', '.join(names)}.")
    return getattr(torchvision.datasets, name)
