"""Callbacks: a progress display that suits both terminals and logs; a complete W&B history after resume."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class EpochLines(ProgressBar):
    """Plain progress for CI, pipes and log files: one line per epoch with its metrics and time."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._t0 = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._enabled:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if v.numel() == 1 and not k.endswith("_step")}
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        # a module may say what its x-axis counts (RL agents: env steps); else optimizer steps
        step = getattr(pl_module, "progress_step", None) or f"step {trainer.global_step}"
        print(f"epoch {trainer.current_epoch + 1}/{total} {step} "
              f"{shown} ({time.perf_counter() - self._t0:.1f} s)", flush=True)


def progress_bar(plain: bool | None = None) -> ProgressBar:
    """A rich bar on a terminal; one line per epoch when `plain` (auto: not a TTY, or under CI)."""
    if plain is None:
        plain = not sys.stdout.isatty() or bool(os.environ.get("CI"))
    return EpochLines() if plain else RichProgressBar()


class ResumedHistory(Callback):
    """On resume, log to W&B the metrics of the checkpointed epochs that the interrupted run's W&B writer
    lost (see lab.loggers.fill_resumed_history), from the CSV logger's earlier files."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        wandb_lg = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        csv_lg = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if trainer.ckpt_path is None or not trainer.is_global_zero or wandb_lg is None or csv_lg is None:
            return
        from lab.loggers import fill_resumed_history

        current = Path(csv_lg.log_dir).resolve()
        earlier = sorted((d for d in Path(csv_lg.root_dir).glob("version_*")
                          if d.name.removeprefix("version_").isdigit() and d.resolve() != current),
                         key=lambda d: int(d.name.removeprefix("version_")))
        fill_resumed_history(wandb_lg, earlier, before_epoch=trainer.current_epoch)
