"""What mode=predict reads (`predict.input`): image files, or a .npy / .csv of examples, checked against what
the run's data module says the model takes, and turned into model inputs with the run's own preprocessing.

Images: converted to the data's channels (grey or RGB, as the training images were), resized only where the
data module resizes what it reads (`data.image_size`), scaled to [0, 1], then normalized with the data
module's `mean_std`; MNIST-like modules that read images as sequences (`as_sequence`) get (rows, columns).
Arrays of image data hold pixels in [0, 1] (uint8 arrays: 0-255), as the images would after scaling; arrays
of tabular data (a data module with `feature_names` and `preprocess`) hold raw features, which the module
standardizes with its training statistics.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lab.errors import ConfigError

ARRAY_SUFFIXES = (".npy", ".csv")
# PIL modes whose values are 8-bit and convert meaningfully to grey or RGB (ImageFolder's loader converts to RGB)
CONVERTIBLE_MODES = ("1", "L", "P", "LA", "PA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
SHOWN = 3  # offending files named in an error


@dataclass
class InputSpec:
    """What one example must be, as the data module gives it."""

    shape: tuple[int, ...]  # the model's input shape of one example, e.g. (1, 28, 28) or (28, 28)
    data: str  # the data module's class, for messages
    images: bool = False  # image files are accepted (image data, or rows of a grey image as a sequence)
    channels: int = 1  # of the images (1: grey, 3: RGB)
    resize: int | None = None  # the data module resizes what it reads to resize x resize
    sequence: bool = False  # images are read row by row: (H, W) per example
    rgb_first: bool = False  # every image is read as RGB first (torchvision's ImageFolder loader), then made grey
    mean: Any = 0.0
    std: Any = 1.0
    feature_names: list[str] | None = None  # tabular data: raw features, standardized by `preprocess`
    preprocess: Callable[[np.ndarray], torch.Tensor] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of an image."""
        return (self.shape[0], self.shape[1]) if self.sequence else (self.shape[-2], self.shape[-1])

    def describe(self) -> str:
        if self.feature_names is not None:
            return f"{len(self.feature_names)} features ({', '.join(self.feature_names)})"
        if self.images:
            kind = "grey" if self.channels == 1 else "RGB"
            h, w = self.size
            if self.resize:
                return f"{kind} images of any size (resized to {self.resize}x{self.resize} as in training)"
            return f"{kind} images of {w}x{h} pixels (width x height)"
        return f"examples of shape {self.shape}"


def input_spec(datamodule: Any) -> InputSpec:
    """The InputSpec of a run's data module (lab.data: input_shape, mean_std, as_sequence, image_size;
    lab.data.TabularDataModule: feature_names, preprocess)."""
    from lab.data.base import ImageDataModule
    from lab.data.folder import ImageFolderDataModule, _SplitImageDataModule
    from lab.data.tabular import TabularDataModule
    from lab.data.vision import MNISTDataModule

    data = type(datamodule).__name__
    if isinstance(datamodule, TabularDataModule):
        names = [str(n) for n in datamodule.feature_names]
        return InputSpec((len(names),), data, feature_names=names, preprocess=datamodule.preprocess)
    if not isinstance(datamodule, ImageDataModule):
        raise ValueError(f"mode=predict reads inputs for the lab's image and table data modules; `{data}` is neither")
    shape = tuple(int(s) for s in datamodule.input_shape)
    mean, std = datamodule.mean_std
    resize = datamodule.image_size if isinstance(datamodule, _SplitImageDataModule) else None
    spec = InputSpec(shape, data, mean=mean, std=std, resize=resize,
                     rgb_first=isinstance(datamodule, ImageFolderDataModule))
    if len(shape) == 3 and shape[0] in (1, 3):
        spec.images, spec.channels = True, shape[0]
    elif len(shape) == 2 and isinstance(datamodule, MNISTDataModule) and datamodule.as_sequence:
        spec.images = spec.sequence = True
    return spec


@dataclass
class Examples:
    """The examples of predict.input: image files (`files`) or an array's rows (`array`, raw values); `names`
    are what predictions.csv calls them (paths relative to the input folder, or row numbers)."""

    names: list[str]
    key: str  # the column of names: path | row
    files: list[Path] | None = None
    array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def batches(self, spec: InputSpec, batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        """(names, model inputs (B, *spec.shape)) in order, batch_size at a time."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if self.files is not None:
                x = torch.stack([load_image(f, spec) for f in self.files[start:stop]])
            else:
                x = preprocess_array(self.array[start:stop], spec)
            yield self.names[start:stop], x


def _error(path: Any, problem: str, spec: InputSpec | None = None) -> ConfigError:
    wants = f" The model takes {spec.describe()} (data: {spec.data})." if spec is not None else ""
    return ConfigError(f"predict.input={str(path)!r}: {problem}.{wants}")


def read_input(path: str | Path | None, spec: InputSpec) -> Examples:
    """Find and check the examples of predict.input (image headers; arrays in full): a ConfigError that says
    what is wrong and what the model takes, before anything is predicted or written."""
    if path is None or str(path) == "":
        raise ConfigError(f"predict.input is not set: mode=predict of this model needs predict.input=<an image "
                          f"folder, an image file, or a .npy / .csv file of examples>; the model takes "
                          f"{spec.describe()} (data: {spec.data}).")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise _error(path, "no such file or folder")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise _error(path, f"the folder holds no image files (searched recursively for "
                               f"{', '.join(IMG_EXTENSIONS)}); for a .npy or .csv of examples, name the file", spec)
        check_images(path, files, spec)
        return Examples([f.relative_to(p).as_posix() for f in files], "path", files=files)
    suffix = p.suffix.lower()
    if suffix in IMG_EXTENSIONS:
        check_images(path, [p], spec)
        return Examples([str(path)], "path", files=[p])
    if suffix == ".npy":
        return Examples(*_rows(read_npy(path, p, spec)))
    if suffix == ".csv":
        return Examples(*_rows(read_csv(path, p, spec)))
    raise _error(path, f"{p.suffix or 'a file without a suffix'} is not a format mode=predict reads; valid choices: "
                       f"an image folder, an image file ({', '.join(IMG_EXTENSIONS)}), .npy or .csv", spec)


def _rows(array: np.ndarray) -> tuple[list[str], str, None, np.ndarray]:
    return [str(i) for i in range(len(array))], "row", None, array


# ---- images ------------------------------------------------------------------------------------------------
def check_images(path: Any, files: list[Path], spec: InputSpec) -> None:
    """Every image's header (size, mode) against the spec; the PIL decoder runs only when predicting."""
    from PIL import Image, UnidentifiedImageError

    if not spec.images:
        raise _error(path, "this model's data are not images, so image files cannot be its input; pass a .npy "
                           "or .csv file with one example per row", spec)
    unreadable, bad_mode, bad_size = [], [], []
    for f in files:
        try:
            with Image.open(f) as img:
                mode, (w, h) = img.mode, img.size
        except (UnidentifiedImageError, OSError) as e:
            unreadable.append(f"{f.name} ({e})")
            continue
        if mode not in CONVERTIBLE_MODES:
            bad_mode.append(f"{f.name} ({mode})")
        elif spec.resize is None and (h, w) != spec.size:
            bad_size.append(f"{f.name} ({w}x{h})")
    n = len(files)

    def some(items: list[str]) -> str:
        return ", ".join(items[:SHOWN]) + (", ..." if len(items) > SHOWN else "")

    if unreadable:
        raise _error(path, f"{len(unreadable)} of {n} image file(s) cannot be read as images: {some(unreadable)}",
                     spec)
    if bad_mode:
        raise _error(path, f"{len(bad_mode)} of {n} image(s) are not 8-bit grey or colour images (PIL mode in "
                           f"parentheses): {some(bad_mode)}; the model was trained on 8-bit pixels scaled by 1/255, "
                           "so convert them to 8-bit first", spec)
    if bad_size:
        h, w = spec.size
        raise _error(path, f"{len(bad_size)} of {n} image(s) are not {w}x{h} pixels: {some(bad_size)}; images "
                           f"are not resized for this model (its data module reads them as they are), so resize "
                           f"or crop them to {w}x{h} first", spec)


def load_image(file: Path, spec: InputSpec) -> torch.Tensor:
    """One image file as the run's data module prepares an image: 8-bit, grey or RGB, resized where the data
    module resizes, scaled to [0, 1], normalized; (C, H, W), or (H, W) rows for a sequence model."""
    from PIL import Image

    with Image.open(file) as img:
        grey_as_is = img.mode == "L" and spec.channels == 1 and not spec.rgb_first
        x = TF.pil_to_tensor(img if grey_as_is else img.convert("RGB"))  # (C, H, W) uint8
    if spec.channels == 1 and x.shape[0] == 3:  # as data=image_folder grayscale=true does (after an RGB load)
        x = TF.rgb_to_grayscale(x, num_output_channels=1)
    if spec.resize is not None:
        x = v2.Resize((spec.resize, spec.resize), antialias=True)(x)
    x = (x.float() / 255.0 - spec.mean) / spec.std
    return x.squeeze(0) if spec.sequence else x


# ---- arrays --------------------------------------------------------------------------------------------------
def _shapes(spec: InputSpec) -> list[tuple[int, ...]]:
    """The shapes of one example an array may have (after the row dimension)."""
    shapes = [spec.shape, (math.prod(spec.shape),)]
    if len(spec.shape) == 3 and spec.shape[0] == 1:  # grey images without their channel dimension
        shapes.append(spec.shape[1:])
    return list(dict.fromkeys(shapes))


def check_array(path: Any, array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Shape and values of an array of examples; returns it as (N, *spec.shape) or (N, F) raw values."""
    if array.ndim < 2:
        raise _error(path, f"it holds an array of shape {tuple(array.shape)}; it needs one example per row "
                           f"(2 or more dimensions, the first counting examples)", spec)
    if len(array) == 0:
        raise _error(path, "it holds no examples (0 rows)", spec)
    shapes = _shapes(spec)
    if tuple(array.shape[1:]) not in shapes:
        valid = " or ".join(str(("N", *s)).replace("'", "") for s in shapes)
        per_row = f"{math.prod(array.shape[1:])} values per example" if array.ndim > 2 else f"{array.shape[1]} columns"
        raise _error(path, f"it holds an array of shape {tuple(array.shape)} ({per_row}); the model needs {valid}, "
                           f"i.e. {math.prod(spec.shape)} values per example", spec)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise _error(path, f"its values are of type {array.dtype}, not real numbers", spec)
    if spec.feature_names is None and array.dtype != np.uint8:
        values = array.astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            raise _error(path, "it holds NaN or infinite values", spec)
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise _error(path, f"its values range from {lo:g} to {hi:g}; arrays of image data hold pixels in "
                               "[0, 1] (as the images are after scaling; mode=predict normalizes them as in "
                               "training), or 0-255 as uint8: divide by 255, or save them with dtype uint8", spec)
    elif spec.feature_names is not None and not np.isfinite(array.astype(np.float64, copy=False)).all():
        raise _error(path, "it holds NaN or infinite values", spec)
    return array


def read_npy(path: Any, file: Path, spec: InputSpec) -> np.ndarray:
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise _error(path, f"it cannot be read as a .npy array ({e})") from None
    return check_array(path, array, spec)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def read_csv(path: Any, file: Path, spec: InputSpec) -> np.ndarray:
    """Rows = examples, comma-separated numbers; an optional header row (any cell not a number). Tabular data
    with a header take their features by name (other columns, e.g. targets, are left out)."""
    with file.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise _error(path, "the file is empty", spec)
    header = None
    if any(_number(c) is None for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise _error(path, "it holds a header row and no examples", spec)
    columns = list(range(len(header))) if header is not None else None
    if header is not None and spec.feature_names is not None:
        missing = [n for n in spec.feature_names if n not in header]
        if missing:
            raise _error(path, f"its header lacks the feature column(s) {', '.join(missing)} (it has "
                               f"{', '.join(header)}); name the columns as in the training data, or leave the "
                               "header out and give the features in the training order", spec)
        columns = [header.index(n) for n in spec.feature_names]
    width = len(header) if header is not None else len(rows[0])
    values = np.empty((len(rows), len(columns) if columns is not None else width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise _error(path, f"data row {i + 1} has {len(row)} columns and the first has {width}; every row "
                               "needs the same columns", spec)
        cells = [row[c] for c in columns] if columns is not None else row
        for j, cell in enumerate(cells):
            v = _number(cell)
            if v is None:
                raise _error(path, f"data row {i + 1}, column {j + 1} holds {cell!r}, not a number", spec)
            values[i, j] = v
    return check_array(path, values, spec)


def preprocess_array(array: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """Checked raw rows (check_array) -> model inputs (B, *spec.shape)."""
    if spec.preprocess is not None:
        return torch.as_tensor(spec.preprocess(np.asarray(array, dtype=np.float64))).float()
    x = torch.as_tensor(np.ascontiguousarray(array)).float()
    if array.dtype == np.uint8:
        x = x / 255.0
    x = x.reshape(len(x), *spec.shape)
    return (x - spec.mean) / spec.std
