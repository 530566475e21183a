"""Loggers and media: W&B that works with no account, and one way to log a figure to every logger."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from omegaconf import DictConfig

from lab.layout import RunLayout

log = logging.getLogger(__name__)
STEP_KEY = "trainer/global_step"  # Lightning's WandbLogger logs the step under this key


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
        # Lightning passes `anonymous=None`, which makes wandb >= 0.19 warn on every run that it has no effect
        self._wandb_init.pop("anonymous", None)

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
        try:
            wandb.finish()
        except Exception as e:  # e.g. its service process already gone (SIGTERM to a whole SLURM job step)
            log.warning("W&B: closing the run failed (%s: %s); its local files are kept", type(e).__name__, e)


def read_wandb_records(path: str | Path, complete: bool = True) -> list[dict]:
    """The records of an offline W&B run (a .wandb file or run folder), via `wandb leet inspect --json`.

    `complete=False` accepts a log cut short by a killed process: the records before the cut."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                         check=complete, capture_output=True, text=True, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and line.endswith("}")]


def read_csv_history(log_dirs: list[Path]) -> list[dict[str, float]]:
    """The rows that CSVLoggers wrote in `log_dirs` (their metrics.csv, in this order), empty cells left out."""
    rows = []
    for d in log_dirs:
        f = Path(d) / "metrics.csv"
        if f.is_file():
            with f.open(newline="") as fh:
                rows += [{k: float(v) for k, v in row.items() if k and v not in ("", None)} for row in csv.DictReader(fh)]
    return rows


def wandb_logged(records: list[dict]) -> set[tuple[int, str]]:
    """(trainer/global_step, key) of every metric in W&B history records (as read_wandb_records gives them)."""
    logged = set()
    for rec in records:
        item = rec.get("history", {}).get("item", {}) if rec.get("type") == "history" else {}
        if STEP_KEY in item:
            step = int(item[STEP_KEY])
            logged.update((step, k) for k in item if not k.startswith("_"))
    return logged


def history_gaps(rows: list[dict[str, float]], logged: set[tuple[int, str]],
                 before_epoch: int) -> dict[int, dict[str, float]]:
    """The values in CSV `rows` of the epochs before `before_epoch` that are not in `logged`, by step.

    Rows without an epoch (e.g. the learning-rate monitor's) count as checkpointed when their step is not
    past the last checkpointed epoch's."""
    last_step = max((r["step"] for r in rows if r.get("epoch", before_epoch) < before_epoch), default=-1.0)
    gaps: dict[int, dict[str, float]] = {}
    for r in rows:
        if "step" not in r:
            continue
        epoch = r.get("epoch", -1 if r["step"] <= last_step else before_epoch)
        if epoch >= before_epoch:  # after the checkpoint: the resumed run logs it again
            continue
        step = int(r["step"])
        missing = {k: v for k, v in r.items() if k not in ("step", "epoch") and (step, k) not in logged}
        if missing:
            gaps.setdefault(step, {}).update(missing, **({"epoch": r["epoch"]} if "epoch" in r else {}))
    return dict(sorted(gaps.items()))


def fill_resumed_history(wandb_logger: _LightningWandbLogger, csv_dirs: list[Path], before_epoch: int) -> int:
    """Complete a resumed W&B run's history with what its killed predecessor logged but W&B never stored.

    W&B's writer keeps up to 32 KiB of records in memory, so a SIGKILL loses the last ones, even from
    before the checkpoint; the CSV logger writes every row as it is logged. Compares the CSV rows of the
    epochs the checkpoint holds with the earlier W&B history (the server's for online runs, else the local
    transaction logs) and logs what is missing, at its original step. Returns how many values it logged."""
    run = wandb_logger.experiment
    logged = None if wandb_logger._offline else _server_logged(run)
    if logged is None:
        here = Path(run.dir).parent.resolve()
        earlier = [d for d in sorted(Path(run.dir).parent.parent.glob(f"*run-*-{run.id}"))
                   if d.resolve() != here and d.is_dir()]
        logged = set().union(*(wandb_logged(read_wandb_records(d, complete=False)) for d in earlier))
    gaps = history_gaps(read_csv_history(csv_dirs), logged, before_epoch)
    for step, values in gaps.items():
        wandb_logger.log_metrics(values, step=step)
    n = sum(len(v) for v in gaps.values())
    if n:
        log.info("W&B: logged %d values (%d steps) that the interrupted run had not stored", n, len(gaps))
    return n


def _server_logged(run) -> set[tuple[int, str]] | None:  # noqa: ANN001  (a wandb Run)
    """What the W&B server holds of an online run's history; None when it cannot be asked."""
    try:
        import wandb

        history = wandb.Api().run(f"{run.entity}/{run.project}/{run.id}").scan_history()
        return wandb_logged([{"type": "history", "history": {"item": row}} for row in history])
    except Exception as e:  # no network, no such run yet, API changes: fall back to the local logs
        log.warning("W&B: could not read the run's history from the server (%s); using the local logs", e)
        return None


def sweep_folder() -> str | None:
    """The folder name of the Hydra multirun this job is part of; None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def build_loggers(cfg: DictConfig, layout: RunLayout) -> list[Logger]:
    """The `logger` nodes' loggers. W&B: a resumed run continues its W&B run (the id it saved), and a sweep's
    jobs share a group."""
    from lab.instantiate import instantiate

    loggers: list[Logger] = []
    for key, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        extra = {}
        if node._target_ == "lab.loggers.WandbLogger":
            if node.get("id") is None and cfg.resume and layout.wandb_id_file.is_file():
                extra["id"] = layout.wandb_id_file.read_text().strip()
            if node.get("group") is None:
                folder = sweep_folder()  # one W&B group per multirun: <task_name>-<sweep folder>
                extra["group"] = f"{cfg.task_name}-{folder}" if folder else None
        loggers.append(instantiate(node, f"logger.{key}", **extra))
    return loggers


def log_config(cfg: DictConfig, loggers: list[Logger], layout: RunLayout) -> None:
    """The resolved config as every logger's hyperparameters; W&B's run id saved for a later resume."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(config)
        if isinstance(lg, WandbLogger):
            layout.wandb_id_file.write_text(lg.experiment.id)
    log.info("Outputs in %s", layout.root)
