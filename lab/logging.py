"""Loggers and media: W&B that works with no account, and one way to log a figure to every logger."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

log = logging.getLogger(__name__)


def wandb_offline_default() -> bool:
    """Offline unless there is an API key (or the user set WANDB_MODE=online explicitly)."""
    if os.environ.get("WANDB_MODE") in ("online", "run"):
        return False
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return True
    return not os.environ.get("WANDB_API_KEY")


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, offline by default when there is no account (`offline: null` = auto)."""

    def __init__(
        self,
        project: str = "lab",
        name: str | None = None,
        save_dir: str = ".",
        offline: bool | None = None,
        id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        job_type: str = "train",
        entity: str | None = None,
        log_model: bool = False,
    ) -> None:
        offline = wandb_offline_default() if offline is None else bool(offline)
        if offline and log_model:
            log.warning("logger.wandb.log_model needs an online run; checkpoints stay on disk only.")
            log_model = False
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            name=name, save_dir=save_dir, offline=offline, id=id, project=project, log_model=log_model,
            group=group, tags=list(tags or []), job_type=job_type, entity=entity,
            resume="allow" if id else None,
        )

    @property
    def experiment(self):  # noqa: ANN201  (Lightning's type: a wandb Run)
        """The W&B run. Resuming right after a crash can find the run id still held by the killed process's
        W&B service, which lets go of it once it notices; wait for that (up to a minute) instead of failing."""
        for attempt in range(30):
            try:
                return super().experiment
            except Exception as e:  # wandb's ServerResponseError, not importable under a stable name
                if "is in use" not in str(e) or attempt == 29:
                    raise
                log.warning("W&B run %s is still held by an earlier (killed?) process; retrying in 2 s", self._id)
                time.sleep(2)


def save_and_log_figure(loggers: list[Logger], key: str, figure, path: str | Path, step: int) -> Path:
    """Save a matplotlib figure as PNG at `path` and log it as an image to W&B / TensorBoard."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3]  # (H, W, 3) uint8
    plt.close(figure)
    log_image_array(loggers, key, image, step)
    return path


def log_image_array(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Log an (H, W, 3) uint8 image to every logger that takes images."""
    for lg in loggers:
        if isinstance(lg, _LightningWandbLogger):
            lg.log_image(key=key, images=[image], step=step)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_image(key, image, global_step=step, dataformats="HWC")


def finish_wandb() -> None:
    """Close the active W&B run so that the next job of a sweep starts its own (wandb reuses an open one)."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency, but never fail a run over closing it
        return
    if wandb.run is not None:
        wandb.finish()


def read_wandb_records(path: str | Path) -> list[dict]:
    """The records of an offline W&B run (a .wandb file or run folder), via `wandb leet inspect --json`."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
