"""Callbacks: a progress display that suits both terminals and logs, learning rates named for what they drive, a
model summary, a complete W&B history after resume."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lab.contracts import model_hooks


def epoch_metrics(metrics: dict) -> dict[str, float]:
    """Each scalar once: a value logged with on_step and on_epoch appears as `k`, `k_step` and `k_epoch`;
    keep the epoch value under `k`."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if hasattr(v, "numel") and v.numel() != 1 or k.endswith("_step"):
            continue
        if k.endswith("_epoch"):
            k = k.removesuffix("_epoch")
        out[k] = float(v)
    return out


class EpochLines(ProgressBar):
    """Plain progress for CI, pipes and log files: one line per epoch with its metrics and time."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._t0 = 0.0
        self._before: dict = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._before = dict(trainer.callback_metrics)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._enabled:
            return
        # only what this epoch logged: a value not logged again (e.g. a DBN's CD loss once it fine-tunes) keeps
        # its old tensor in callback_metrics
        metrics = epoch_metrics({k: v for k, v in trainer.callback_metrics.items()
                                 if k not in self._before or v is not self._before[k]})
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        # a module may say what its x-axis counts (RL agents: env steps); else optimizer steps
        step = model_hooks(pl_module).progress_step or f"step {trainer.global_step}"
        print(f"epoch {trainer.current_epoch + 1}/{total} {step} "
              f"{shown} ({time.perf_counter() - self._t0:.1f} s)", flush=True)


class LearningRates(Callback):
    """Logs each optimizer's learning rate, named for what it drives: its scheduler's `name` when it has one
    (`train/lr`, lab.models.optim), `train/lr` for a module's only optimizer, `lr/<name>` from the module's
    `optimizer_names` (GANs: `lr/generator`, `lr/discriminator`); `/group<i>` for extra parameter groups.
    Logged at each epoch start, and every `log_every_n_steps` when a scheduler steps per batch."""

    def _names(self, trainer: Trainer, pl_module: LightningModule) -> list[str]:
        optimizers = trainer.optimizers
        given = list(model_hooks(pl_module).optimizer_names)
        named = {id(c.scheduler.optimizer): c.name for c in trainer.lr_scheduler_configs if c.name}
        names = []
        for i, opt in enumerate(optimizers):
            if id(opt) in named:
                names.append(named[id(opt)])
            elif len(given) == len(optimizers):
                names.append(f"lr/{given[i]}")
            else:
                names.append("train/lr" if len(optimizers) == 1 else f"lr/{type(opt).__name__.lower()}_{i}")
        return names

    def _log(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            return
        stats = {}
        for name, opt in zip(self._names(trainer, pl_module), trainer.optimizers, strict=True):
            for i, group in enumerate(opt.param_groups):
                stats[name + (f"/group{i}" if i else "")] = float(group["lr"])
        for lg in trainer.loggers:
            lg.log_metrics(stats, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        per_step = any(c.interval == "step" for c in trainer.lr_scheduler_configs)
        if per_step and batch_idx and trainer.global_step % trainer.log_every_n_steps == 0:
            self._log(trainer, pl_module)


class ModelSummary(RichModelSummary):
    """Lightning's rich summary without the FLOPs column and total, which are 0 unless the module sets an
    `example_input_array` (shown when it does)."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int, **kwargs) -> None:
        from lightning.pytorch.utilities.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(n, v) for n, v in summary_data if n != "FLOPs" or total_flops]
        table = Table(header_style=kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            table.add_column(name, justify="right" if name in ("Params", "FLOPs", "In sizes", "Out sizes") else "left")
        for row in zip(*(v for _, v in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        lines = [f"Trainable params: {get_human_readable_count(int(trainable_parameters))}",
                 f"Non-trainable params: {get_human_readable_count(int(total_parameters - trainable_parameters))}",
                 f"Total params: {get_human_readable_count(int(total_parameters))}",
                 f"Estimated size (MB): {get_formatted_model_size(model_size)}"]
        if total_flops:
            lines.append(f"Total FLOPs: {get_human_readable_count(total_flops)}")
        console.print("   ".join(lines))


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


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Callback]:
    """The `callbacks` nodes' callbacks; a node whose factory returns None is not needed in this run (e.g.
    optuna_pruning outside an Optuna trial)."""
    from lab.instantiate import instantiate

    callbacks = []
    for key, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            cb = instantiate(node, f"callbacks.{key}")
            if cb is None or (isinstance(cb, LearningRateMonitor) and not has_logger):
                continue  # the monitor refuses to run without a logger, and there is nothing to show
            callbacks.append(cb)
    return callbacks


def optuna_pruning(storage: str | None, study_name: str | None, trial_id: int | None, report: bool,
                   monitor: str) -> Callback | None:
    """The `callbacks.optuna_pruning` node: an OptunaPruning callback in a trial of an Optuna sweep that reports
    (the sweeper fills `optuna.*`), None in every other run. The pruner is the sweeper's (hydra.sweeper.pruner)."""
    if not (storage and report):
        return None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lab.optuna_trials import OptunaPruning  # imports optuna: only the trials of a sweep pay for it

    pruner = HydraConfig.get().sweeper.get("pruner") if HydraConfig.initialized() else None
    return OptunaPruning(storage, str(study_name), int(trial_id), monitor,
                         OmegaConf.to_container(pruner) if pruner else None)
