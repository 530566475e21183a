"""Optuna from inside the lab: the study storages a sweep may name, and pruning from inside a job (a Lightning
callback that reports to the sweeper's trial)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer

JOURNAL = "journal://"
STORAGE_FORMS = ("sqlite:///<file>.db", "postgresql+psycopg://<user>:<password>@<host>:<port>/<database>",
                 "mysql+pymysql://<user>:<password>@<host>/<database>",
                 f"{JOURNAL}/<absolute path>.log (Optuna's journal file, for a shared filesystem without a database)")


class StorageError(ValueError):
    """A storage URL that is malformed or whose database cannot be reached."""


PASSWORD_ENV = "LAB_OPTUNA_STORAGE"  # the storage URL with its password, for a sweep's jobs (they inherit it)


def redacted(url: str) -> str:
    """The URL with its password hidden, for messages and for what jobs record of their overrides."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage behind `url`, connected and checked: a StorageError (one paragraph, naming the URL and
    the valid forms) when it is malformed or its database does not answer."""
    forms = "; ".join(STORAGE_FORMS)
    if url.startswith(JOURNAL):
        path = Path(url[len(JOURNAL):])
        if not path.name:
            raise StorageError(f"hydra.sweeper.storage={url!r} names no journal file; valid forms: {forms}.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(path))
        except OSError as e:
            raise StorageError(f"hydra.sweeper.storage={url!r}: the journal file cannot be written ({e}).") from None
        return optuna.storages.JournalStorage(backend)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"hydra.sweeper.storage={url!r} is not a storage URL; valid forms: {forms}.") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        # pre-ping: a worker that outlives a database restart reconnects instead of failing its next trial
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as e:
        raise StorageError(f"hydra.sweeper.storage={redacted(url)!r}: no database driver for it ({e}); valid forms: "
                           f"{forms} (PostgreSQL needs `pip install psycopg[binary]`, which the lab installs).") from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: refused, unknown host, bad password
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StorageError(f"hydra.sweeper.storage={redacted(url)!r}: the database cannot be reached ({reason}). "
                           "Check that its server runs and the user, password, host, port and database name are "
                           "right (scripts/cluster.sh status prints the lab's local PostgreSQL URL); nothing was "
                           "submitted.") from None


def job_storage(configured: str) -> str:
    """The storage URL a job connects with: its `optuna.storage` override, which the sweeper passes with the
    password hidden (it would be in the job's config, logs and W&B run), completed from PASSWORD_ENV."""
    full = os.environ.get(PASSWORD_ENV)
    return full if full and redacted(full) == configured else configured


class OptunaPruning(Callback):
    """Reports `monitor` after every training epoch (after validation / the RL evaluation) to the trial
    stored in `storage`, and stops the job with optuna.TrialPruned when the pruner says so."""

    def __init__(self, storage: str, study_name: str, trial_id: int, monitor: str,
                 pruner: dict[str, Any] | None) -> None:
        # The pruner lives in the sweeper's process, not in the storage: rebuild the same one here.
        chosen = optuna.pruners.MedianPruner(**pruner) if pruner else optuna.pruners.NopPruner()
        study = optuna.load_study(study_name=study_name, storage=open_storage(job_storage(storage)), pruner=chosen)
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

