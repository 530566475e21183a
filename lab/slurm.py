"""SLURM preemption and time limits: checkpoint, requeue, continue the same run.

SLURM warns a job before its time limit (`--signal=USR1@<seconds>`, set by the lab's SLURM launchers; submitit's own
launchers use USR2) or before preempting it. The `Preemption` callback (conf/callbacks/default.yaml) turns that
signal into: finish the current training step (and its logging), save `checkpoints/preempted.ckpt`, close the loggers, `scontrol
requeue` the job, exit without a result. The requeued job runs the same command in the same run folder, where
`lab.run` finds the checkpoint and continues from it as `resume=true` would (same W&B run, global step and env
steps continuing, nothing logged twice); once the run has gone past it, the checkpoint is removed.

Why not Lightning's own SLURM auto-requeue: it saves from inside the signal handler, wherever the signal lands
(possibly in the middle of an optimizer step), then keeps training and logging until SLURM's SIGTERM arrives, so
the continuation would log those steps a second time. Here the decision is taken between steps, by all DDP ranks
together.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("lab")

PREEMPTED = "preempted.ckpt"  # in the run's checkpoints/ folder


class Requeued(SystemExit):
    """Raised on every rank once the checkpoint is saved: `lab.run` closes the loggers, then `requeue()` asks SLURM
    to start the job again (last, since SLURM then signals every process of the job), and the process ends
    without writing a result (submitit and Hydra let SystemExit through)."""

    def __init__(self, job: str, checkpoint: Path, global_step: int, rank_zero: bool) -> None:
        super().__init__(0)
        self.job, self.checkpoint, self.global_step, self.rank_zero = job, checkpoint, global_step, rank_zero

    def requeue(self) -> None:
        if not self.rank_zero:
            return
        result = subprocess.run(["scontrol", "requeue", self.job], capture_output=True, text=True)
        if result.returncode == 0:
            log.warning("SLURM signal: saved %s at global step %d and requeued job %s; it continues this run when "
                        "it starts again", self.checkpoint, self.global_step, self.job)
        else:
            log.error("SLURM signal: saved %s at global step %d, but `scontrol requeue %s` failed (%s); continue the "
                      "run with the same command and resume=true", self.checkpoint, self.global_step, self.job,
                      (result.stderr or result.stdout).strip())


def job_id() -> str | None:
    """This SLURM job's id as `scontrol` names it (`<array job>_<task>` for an array task); None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def preempted_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint a preempted job left in `output_dir`, if any."""
    path = Path(output_dir) / "checkpoints" / PREEMPTED
    return path if path.is_file() else None


class Preemption(Callback):
    """Checkpoint, requeue and exit when SLURM signals the job (`signals`); does nothing outside SLURM."""

    def __init__(self, dirpath: str, signals: list[str]) -> None:
        valid = sorted(s.name for s in signal.Signals)
        bad = [s for s in signals if s not in valid]
        if bad:
            raise ValueError(f"signals={bad}: not signal names; valid: e.g. SIGUSR1, SIGUSR2 (any of {', '.join(valid)})")
        self.dirpath = Path(dirpath)
        self.signals = [signal.Signals[s] for s in signals]
        self.job = None
        self.signalled: signal.Signals | None = None
        self._saving = False
        self._previous: dict[signal.Signals, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.job = job_id()
        if self.job is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:  # replaces Lightning's (and submitit's) handler for the length of the fit
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002  (a signal handler's signature)
        self.signalled = signal.Signals(signum)  # acted on between steps, see on_train_batch_start

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # before a step, not after one: Lightning logs a step's metrics after on_train_batch_end, so a checkpoint
        # taken there would lose the last step's logs; here every finished step is logged and in the checkpoint
        if self.job is None:
            return
        stop = self.signalled is not None
        if trainer.world_size > 1:  # one decision for all ranks: they got the signal at different steps
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._checkpoint_and_requeue(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if not self._saving:  # another checkpoint (ModelCheckpoint's) taken meanwhile
            return
        # Lightning's restore assumes a mid-epoch checkpoint was taken after a step, before its count of logged
        # steps went up, and adds one; this one is taken before the next step, after the count went up
        state = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
        state["_batches_that_stepped"] -= 1

    def _checkpoint_and_requeue(self, trainer: Trainer) -> None:
        path = self.dirpath / PREEMPTED
        self._saving = True
        trainer.save_checkpoint(path)  # every rank takes part; rank 0 writes
        self._saving = False
        for lg in trainer.loggers:
            lg.save()
        trainer.strategy.barrier("lab_preemption")
        raise Requeued(str(self.job), path, trainer.global_step, trainer.is_global_zero)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")
