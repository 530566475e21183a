"""Shared test helpers: synthetic MNIST-style data and configs composed from the real conf/."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback
from omegaconf import DictConfig, open_dict

import lab  # noqa: F401  (registers resolvers)
from lab.data.fetch import SPECS, write_dataset
from lab.paths import CONFIG_DIR
from lab.validate import group_options


def synthetic_arrays(n_train: int = 400, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """Learnable 28x28 uint8 images: class k is a bright 6x6 block at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 3 + 8 * (k // 4), 3 + 6 * (k % 4)
            images[i, r : r + 6, c : c + 6] = 255
        return images, labels.astype(np.uint8)

    tx, ty = make(n_train)
    sx, sy = make(n_test)
    return {"train-images-idx3-ubyte": tx, "train-labels-idx1-ubyte": ty,
            "t10k-images-idx3-ubyte": sx, "t10k-labels-idx1-ubyte": sy}


def write_image_folder(root: Path, n: int, seed: int = 0) -> Path:
    """root/blue and root/red: n RGB 32x32 PNGs each, bluish and reddish with noise (a learnable two-class folder)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(("blue", "red")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)
            img[..., 2 if k == 0 else 0] += 150
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def write_synthetic_root(root: Path) -> Path:
    """A data root holding synthetic MNIST and Fashion-MNIST in torchvision's raw layout."""
    for spec in SPECS.values():
        write_dataset(root / spec.folder / "raw", synthetic_arrays(seed=len(spec.name)))
    return root


# Shrinks any experiment to a few batches on the synthetic data, with CSV logging only.
SMOKE = [
    "data.verify=false",
    "data.val_size=100",
    "data.batch_size=32",
    "data.eval_batch_size=50",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "~callbacks.model_summary",
]


# The same for the generated seq2seq tasks (family seq2seq), which have no image-data keys.
SEQ_SMOKE = ["data.num_train=96", "data.num_val=32", "data.num_test=64", "data.batch_size=32", "data.eval_batch_size=32",
             *(o for o in SMOKE if not o.startswith(("data.", "trainer.limit_"))), "model.attention_examples=2"]


# The same for several datasets at once (data=multitask_*): SMOKE's data keys for each task.
MULTITASK_SMOKE = [*(o.replace("data.", f"data.tasks.{t}.", 1) for t in ("mnist", "fashion") for o in SMOKE
                     if o.startswith("data.")), *(o for o in SMOKE if not o.startswith("data."))]


def smoke_overrides(overrides: list[str]) -> list[str]:
    """SEQ_SMOKE for an experiment of the seq2seq family, MULTITASK_SMOKE for one on several datasets, SMOKE
    otherwise."""
    names = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
    path = CONFIG_DIR / "experiment" / f"{names[-1]}.yaml" if names else None
    text = path.read_text() if path is not None and path.is_file() else ""
    if "override /family: seq2seq" in text:
        return SEQ_SMOKE
    return MULTITASK_SMOKE if "override /data: multitask" in text else SMOKE


def build(cfg: DictConfig):
    """The experiment's runner, with its pieces built as lab.run builds them (data and model, env and agent)."""
    from lab.instantiate import instantiate

    runner = instantiate(cfg.runner, "runner")
    runner.build(cfg)
    return runner


def make_cfg(overrides: list[str], tmp_path: Path, data_dir: Path | None, smoke: bool = True) -> DictConfig:
    """Compose conf/config.yaml with `overrides`, outputs under tmp_path (no Hydra run folder)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=(smoke_overrides(list(overrides)) if smoke else []) + list(overrides))
    with open_dict(cfg):
        # the layout of Hydra's run folders: <log_dir>/<task_name>/runs/<run>
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "logs" / cfg.task_name / "runs" / "run")
        if data_dir is not None:
            cfg.paths.data_dir = str(data_dir)
    return cfg


class CountingHooks(Callback):
    """A user's callback on the per-step hooks (`+callbacks.count._target_=helpers.CountingHooks`): counts
    their calls and the torch threads training ran with, in the class (the run builds the instance)."""

    calls: dict[str, int] = {}
    threads: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        CountingHooks.threads.append(torch.get_num_threads())

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        CountingHooks.calls["backward"] = CountingHooks.calls.get("backward", 0) + 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        CountingHooks.calls["optimizer_step"] = CountingHooks.calls.get("optimizer_step", 0) + 1


class SlowSteps(Callback):
    """Makes every training step last at least `seconds` (`+callbacks.slow._target_=helpers.SlowSteps
    +callbacks.slow.seconds=0.5`): a run long enough to be signalled, cancelled or killed in the middle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        time.sleep(self.seconds)


class SaveRankWeights(Callback):
    """Saves each DDP rank's final weights, with the SLURM node it ran on, to <output_dir>/weights_rank<r>.pt."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        import os

        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"node": os.environ.get("SLURMD_NODENAME"), "rank": trainer.global_rank, "state_dict": state},
                   Path(self.dirpath) / f"weights_rank{trainer.global_rank}.pt")


def write_documented_files(page: str, folder: str, where: Path) -> set[str]:
    """Write under `where` every file a docs page shows: a code block that follows a paragraph starting with
    `<folder>/<path>` is that file's text. Returns the paths written (relative to `where`)."""
    import re

    from lab.paths import ROOT

    text = (ROOT / "docs" / page).read_text()
    files = dict(re.findall(rf"^`({folder}/[^`]+)`[^\n]*(?:\n[^\n]+)*\n\n```[a-z]*\n(.*?)```", text,
                            flags=re.M | re.S))
    for path, body in files.items():
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        (where / path).write_text(body)
    return set(files)


@functools.cache
def experiment_targets() -> dict[str, dict[str, str | None]]:
    """experiment -> the `_target_` of its runner, model and agent nodes (None where it has no such node), as
    Hydra composes them from conf/: tests choose experiments by what they run, not by their names."""
    out = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name in group_options("experiment"):
            cfg = compose("config", overrides=[f"experiment={name}"])
            out[name] = {node: (cfg.get(node) or {}).get("_target_") for node in ("runner", "model", "agent")}
    return out


def experiments_with(node: str, *classes: type) -> list[str]:
    """The experiments whose `node` (runner, model or agent) builds one of `classes` (any class when none given)."""
    from hydra.utils import get_class

    return [name for name, targets in experiment_targets().items() if targets[node] is not None
            and (not classes or issubclass(get_class(targets[node]), classes))]
