"""SLURM preemption and time limits: checkpoint, requeue, continue the same run.

SLURM warns a job before its time limit (`--signal=USR1@<seconds>`, set by the lab's SLURM launchers; submitit's own
launchers use USR2) or before preempting it. From the job's start the signal is only recorded (`watch`); the
`Preemption` callback (conf/callbacks/default.yaml) acts on it at the next step boundary: the finished steps are
logged, `checkpoints/preempted.ckpt` is saved, the loggers are closed, `scontrol requeue` puts the job back in the
queue, and the process exits without a result. The requeued job runs the same command in the same run folder, where
`lab.run` finds the checkpoint and continues from it as `resume=true` would (same W&B run, global step and env
steps continuing, nothing logged twice); once the run has gone past it, the checkpoint is removed.

SIGTERM (scancel, the time limit reached, a preemption without warning) means the job is ending: SLURM kills it
KillWait seconds later. submitit ignores SIGTERM, so a job cancelled outside training went on and could still write a
result; here it ends the run (`Cancelled`) without a result: at once outside a trainer stage, at the next step inside
one (Lightning's own SIGTERM handling). Once the run is over, the warning signals are ignored, so one arriving while
the process exits cannot kill it (Python restores their default action, death, as it shuts down).

Why not Lightning's own SLURM auto-requeue: it saves from inside the signal handler, wherever the signal lands
(possibly in the middle of an optimizer step), then keeps training and logging until SLURM's SIGTERM arrives, so
the continuation would log those steps a second time; and a signal before the fit starts kills the job. Here the
decision is taken between steps, by all DDP ranks together.
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

from lab.layout import PREEMPTED, RunLayout

log = logging.getLogger("lab")



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
        unwatch()  # SLURM sends SIGTERM to the job once it is requeued: this process is ending anyway
        result = subprocess.run(["scontrol", "requeue", self.job], capture_output=True, text=True)
        if result.returncode == 0:
            log.warning("SLURM signal: saved %s at global step %d and requeued job %s; it continues this run when "
                        "it starts again", self.checkpoint, self.global_step, self.job)
        else:
            log.error("SLURM signal: saved %s at global step %d, but `scontrol requeue %s` failed (%s); continue the "
                      "run with the same command and resume=true", self.checkpoint, self.global_step, self.job,
                      (result.stderr or result.stdout).strip())


class Cancelled(SystemExit):
    """SIGTERM outside a trainer stage of a SLURM job: the run stops with the signal's exit status, no result."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)


def job_id() -> str | None:
    """This SLURM job's id as `scontrol` names it (`<array job>_<task>` for an array task); None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def restarted() -> bool:
    """Whether this SLURM job is a requeued one (SLURM counts its restarts)."""
    return job_id() is not None and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def preempted_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint a preempted job left in `output_dir`, if any."""
    path = RunLayout(Path(output_dir)).preempted_checkpoint
    return path if path.is_file() else None


# SLURM's warning signals: USR1 from the lab's launchers (--signal=USR1@...), USR2 from submitit's. SLURM may send
# them up to a minute earlier than asked, so before training has even started: they are caught from the start of
# the job (watch(), called by the lab's SLURM launcher and by lab.run) and acted on at the first step boundary.
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
_received: list[signal.Signals] = []


def _record(signum: int, frame: Any) -> None:  # noqa: ARG001  (a signal handler's signature)
    _received.append(signal.Signals(signum))


def _cancel(signum: int, frame: Any) -> None:  # noqa: ARG001
    if signal.getsignal(signal.SIGTERM) is not _cancel:
        return  # called by Lightning's handler, inside a trainer stage: it stops the loop at the next step
    raise Cancelled(signum)


def _in_slurm_main_thread() -> bool:
    return job_id() is not None and threading.current_thread() is threading.main_thread()


def watch() -> None:
    """In a SLURM job, from now on record SIGNALS for the Preemption callback instead of dying of them (USR1's
    default) or letting another handler act on them, and end the run on SIGTERM (`Cancelled`); outside SLURM, or
    off the main thread, nothing."""
    if not _in_slurm_main_thread():
        return
    for sig in SIGNALS:
        if signal.getsignal(sig) is not _record:
            signal.signal(sig, _record)
    if signal.getsignal(signal.SIGTERM) is not _cancel:
        signal.signal(signal.SIGTERM, _cancel)


def unwatch() -> None:
    """The run is over: ignore SIGNALS from now on (nothing left to save) and SIGTERM (the process is ending)."""
    if not _in_slurm_main_thread():
        return
    for sig in (*SIGNALS, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _received.clear()


def received() -> signal.Signals | None:
    """The first warning signal received and not acted on yet."""
    return _received[0] if _received else None


class Preemption(Callback):
    """Checkpoint, requeue and exit once SLURM has sent a warning signal (SIGNALS); does nothing outside SLURM."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.job: str | None = None
        self._saving = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.job = job_id()
        watch()  # (again: Lightning's SLURM environment installs its own USR1 handler at fit start)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # before a step, not after one: Lightning logs a step's metrics after on_train_batch_end, so a checkpoint
        # taken there would lose the last step's logs; here every finished step is logged and in the checkpoint
        if self.job is None:
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.current.completed % trainer.accumulate_grad_batches:
            return  # inside a window of gradient accumulation: its gradients would not be in the checkpoint
        stop = received() is not None
        if trainer.world_size > 1:  # one decision for all ranks: they got the signal at different steps
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._checkpoint_and_requeue(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if not self._saving:  # another checkpoint (ModelCheckpoint's) taken meanwhile
            return
        # Lightning's restore assumes a mid-epoch checkpoint was taken after a step, before its count of logged
        # steps went up, and then adds one (when the step ends an accumulation window, which it tests on the state
        # saved here); this one is taken before the next step, after the count went up
        if not trainer.fit_loop.epoch_loop._should_accumulate():
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    def _checkpoint_and_requeue(self, trainer: Trainer) -> None:
        path = self.dirpath / PREEMPTED
        self._saving = True
        try:
            trainer.save_checkpoint(path)  # every rank takes part; rank 0 writes
        finally:
            self._saving = False
        for lg in trainer.loggers:
            lg.save()
        trainer.strategy.barrier("lab_preemption")
        _received.clear()  # acted on
        raise Requeued(str(self.job), path, trainer.global_step, trainer.is_global_zero)
