"""Pruning from inside a job: a Lightning callback that reports to the sweeper's Optuna trial."""

from __future__ import annotations

from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer


class OptunaPruning(Callback):
    """Reports `monitor` after every training epoch (after validation / the RL evaluation) to the trial
    stored in `storage`, and stops the job with optuna.TrialPruned when the pruner says so."""

    def __init__(self, storage: str, study_name: str, trial_id: int, monitor: str,
                 pruner: dict[str, Any] | None) -> None:
        # The pruner lives in the sweeper's process, not in the storage: rebuild the same one here.
        chosen = optuna.pruners.MedianPruner(**pruner) if pruner else optuna.pruners.NopPruner()
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=chosen)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.monitor = monitor

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.monitor}={float(value):.4g}")
