"""SLURM without a cluster: launcher shapes from the trainer, and the preemption callback on a real Lightning fit
(a signal sent to this process, a stand-in `scontrol` that records its call)."""

import os
import signal
import stat
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import OmegaConf

from helpers import make_cfg
from lab import slurm
from lab.loggers import read_csv_history
from lab.paths import CONFIG_DIR
from lab.resume import find_resume_checkpoint
from lab.run import run
from lab.slurm import PREEMPTED, Cancelled, Preemption, Requeued, job_id, preempted_checkpoint, unwatch, watch


@pytest.fixture(autouse=True)
def _signal_handlers():
    """What a test installs for SLURM's signals is this process's until the test ends, then put back."""
    before = {sig: signal.getsignal(sig) for sig in (*slurm.SIGNALS, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)
    slurm._received.clear()


@pytest.mark.parametrize(("devices", "tasks"), [("auto", 1), (2, 2), ("3", 3), (-1, 1), ("[0,1]", 2), ("'0,1,2'", 3)])
@pytest.mark.parametrize("launcher", ["slurm", "slurm_multi_gpu"])
def test_slurm_launchers_take_their_shape_from_the_trainer(launcher, devices, tasks):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", "trainer=ddp", f"trainer.devices={devices}",
                                           "trainer.num_nodes=2"], return_hydra_config=True)
    launcher_cfg = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher_cfg["_target_"] == "hydra_plugins.lab_slurm_launcher.SlurmLauncher"
    assert launcher_cfg["tasks_per_node"] == tasks and launcher_cfg["nodes"] == 2
    assert launcher_cfg["additional_parameters"]["signal"] == f"USR1@{launcher_cfg['signal_delay_s']}"
    if launcher == "slurm_multi_gpu":
        assert launcher_cfg["gpus_per_node"] == tasks
    else:
        assert launcher_cfg["gpus_per_node"] is None and launcher_cfg["setup"] == ["export OMP_NUM_THREADS=1"]


def test_job_id_names_array_tasks_as_scontrol_does(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    assert job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert job_id() == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert job_id() == "40_1"


class Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4))
        return torch.utils.data.DataLoader(data, batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SignalAt(Callback):
    """Sends `signum` to this process after training batch `at`, as SLURM's --signal would."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum, self.seen = at, signum, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((batch_idx, signal.getsignal(self.signum)))
        if batch_idx == self.at:
            os.kill(os.getpid(), self.signum)


def fake_scontrol(tmp_path: Path) -> Path:
    """A `scontrol` on PATH that writes its arguments to calls.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def preempted_fit(tmp_path: Path, callbacks: list[Callback], accumulate: int = 1) -> tuple[Trainer, Requeued]:
    trainer = Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=accumulate,
                      callbacks=[*callbacks, Preemption(dirpath=str(tmp_path / "checkpoints"))])
    with pytest.raises(Requeued) as raised:
        trainer.fit(Tiny())
    return trainer, raised.value


def resumed_at(tmp_path: Path, accumulate: int = 1) -> tuple[tuple[int, int, int, int], int]:
    """Where a fit from the preemption checkpoint goes on (epoch, batch, global step, the loggers' step), and the
    global step it ends at."""

    class FirstBatch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.first = getattr(self, "first", (trainer.current_epoch, batch_idx, trainer.global_step,
                                                 trainer.fit_loop.epoch_loop._batches_that_stepped))

    first = FirstBatch()
    trainer = Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[first],
                      accumulate_grad_batches=accumulate)
    trainer.fit(Tiny(), ckpt_path=tmp_path / "checkpoints" / PREEMPTED)
    return first.first, trainer.global_step


@pytest.mark.parametrize(("signum", "at", "resumes_at"), [(signal.SIGUSR1, 5, (0, 6, 6)),
                                                          (signal.SIGUSR2, 15, (1, 0, 16))])  # at an epoch's end
def test_the_signal_checkpoints_between_steps_and_requeue_asks_slurm(signum, at, resumes_at, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path)}:{os.environ['PATH']}")
    sender = SignalAt(at=at, signum=signum)
    trainer, requeued = preempted_fit(tmp_path, [sender])
    # stopped before the step after the signal (16 steps an epoch): none after it started
    assert requeued.global_step == trainer.global_step == at + 1 and sender.seen[-1][0] == at % 16
    assert all(handler is slurm._record for _, handler in sender.seen)  # recorded, not Lightning's or the default
    assert slurm.received() is None  # acted on
    assert not (tmp_path / "calls.txt").exists()  # requeued only once lab.run has closed the loggers
    requeued.requeue()
    assert (tmp_path / "calls.txt").read_text().split() == ["requeue", "77"]
    # the requeued job goes on with the next batch, its metrics at the next logger step: 16 x 3 steps in all
    assert resumed_at(tmp_path) == ((*resumes_at, resumes_at[2]), 48)


def test_with_gradient_accumulation_the_checkpoint_waits_for_the_window_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "80")
    trainer, requeued = preempted_fit(tmp_path, [SignalAt(at=4, signum=signal.SIGUSR1)], accumulate=2)
    # signalled in batch 4, the first of a window of 2: stopped after batch 5, at optimizer step 3 of 8 an epoch
    assert requeued.global_step == trainer.global_step == 3
    assert resumed_at(tmp_path, accumulate=2) == ((0, 6, 3, 3), 24)


def test_a_signal_before_training_starts_is_not_lost(tmp_path, monkeypatch):
    """SLURM may send its warning up to a minute early: here before the fit (USR1's default action would kill)."""
    monkeypatch.setenv("SLURM_JOB_ID", "79")
    watch()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert slurm.received() == signal.SIGUSR1
    trainer, requeued = preempted_fit(tmp_path, [])
    assert requeued.global_step == trainer.global_step == 0
    assert resumed_at(tmp_path) == ((0, 0, 0, 0), 48)


def test_outside_slurm_the_signals_are_left_alone(tmp_path, monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    watch()
    sender = SignalAt(at=-1, signum=signal.SIGUSR1)
    Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[sender, Preemption(dirpath=str(tmp_path))]).fit(Tiny())
    assert all(handler is not slurm._record for _, handler in sender.seen) and len(sender.seen) == 16


def test_sigterm_outside_a_trainer_stage_ends_the_run_at_once(monkeypatch):
    """scancel sends SIGTERM; submitit ignores it, so a job cancelled while it loads data or writes its report
    would go on and report a result within SLURM's KillWait."""
    monkeypatch.setenv("SLURM_JOB_ID", "81")
    watch()
    with pytest.raises(Cancelled) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode; this loop is never finished
            pass
    assert raised.value.code == 128 + signal.SIGTERM


def test_sigterm_inside_fit_stops_at_the_next_step(monkeypatch):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    monkeypatch.setenv("SLURM_JOB_ID", "82")
    watch()
    trainer = Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[SignalAt(at=5, signum=signal.SIGTERM)])
    with pytest.raises(SIGTERMException):  # Lightning's, at a step boundary; not Cancelled in the middle of a step
        trainer.fit(Tiny())
    assert trainer.global_step == 6
    assert signal.getsignal(signal.SIGTERM) is slurm._cancel  # Lightning put the job's handler back


def test_once_the_run_is_over_late_signals_are_ignored(monkeypatch):
    """A warning signal arriving while a finished job exits must not kill it: Python gives USR1 its default
    action (death) back as it shuts down, unless it is ignored."""
    monkeypatch.setenv("SLURM_JOB_ID", "83")
    watch()
    unwatch()
    for sig in (*slurm.SIGNALS, signal.SIGTERM):
        assert signal.getsignal(sig) is signal.SIG_IGN
        os.kill(os.getpid(), sig)
    assert slurm.received() is None


LENGTH = ("trainer.max_epochs", "trainer.max_steps")  # what a classifier run may change when it resumes


def test_a_requeued_job_continues_its_run_folder(tmp_path, data_dir, monkeypatch):
    """run() as a SLURM job: signalled after its 2nd step, it saves, closes, requeues; run again (the requeued
    job), it continues the same folder and CSV history from step 2 to the end, and drops the checkpoint."""
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path)}:{os.environ['PATH']}")
    overrides = ["experiment=mlp_mnist", "trainer.max_epochs=2", "+callbacks.signal._target_=test_slurm.SignalOnce",
                 "+callbacks.signal.global_step=2"]
    cfg = make_cfg(overrides, tmp_path, data_dir)
    with pytest.raises(Requeued):
        run(cfg)
    out = Path(cfg.paths.output_dir)
    assert torch.load(out / "checkpoints" / PREEMPTED, weights_only=False)["global_step"] == 2
    assert (tmp_path / "calls.txt").read_text().split() == ["requeue", "78"]
    cfg = make_cfg(overrides, tmp_path, data_dir)  # the same command, started again by SLURM
    assert find_resume_checkpoint(cfg, LENGTH) == out / "checkpoints" / PREEMPTED
    metrics = run(cfg)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6 and last["epoch"] == 1 and "test/acc" in metrics  # 2 epochs of 3 steps
    assert preempted_checkpoint(out) is None  # gone once the run went past it
    versions = [read_csv_history([out / "csv" / v]) for v in ("version_0", "version_1")]
    steps = [[int(r["step"]) for r in rows if "train/loss_step" in r] for rows in versions]
    assert steps == [[0, 1], [2, 3, 4, 5]]  # every step logged once
    logged = [{(r["step"], k) for r in rows for k in r if k not in ("step", "epoch")} for rows in versions]
    assert (2, "train/lr") in logged[1] and not logged[0] & logged[1]  # nothing twice, not even the lr monitor's


class SignalOnce(Callback):
    """Sends SIGUSR1 to this process after the step that reaches `global_step` (in the first run only)."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.global_step:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_resume_in_a_sweep_starts_a_job_that_has_no_checkpoint_yet(tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", "resume=true"], tmp_path, data_dir)
    assert find_resume_checkpoint(cfg, LENGTH, required=False) is None
    with pytest.raises(Exception, match="resume=true, but no checkpoints/last.ckpt exists"):
        find_resume_checkpoint(cfg, LENGTH)


def test_the_slurm_launcher_without_sbatch_is_a_clear_error(tmp_path, data_dir):
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"  # a PATH with python but without SLURM's commands
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "lab", "-m", "hydra/launcher=slurm", "experiment=mlp_mnist", "seed=0,1",
                           f"paths.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (message,) = [line for line in proc.stderr.splitlines() if line.strip()]
    assert message.startswith("error: hydra/launcher=slurm submits jobs with SLURM's `sbatch`, which is not on")
    assert not list((tmp_path / "sweep").glob("*/.hydra"))  # no job started


def test_a_requeued_job_without_a_preemption_checkpoint_continues_from_its_last(tmp_path, data_dir, monkeypatch):
    """SLURM may requeue a job without warning it first (preemption without send_user_signal, a node failure):
    the restarted job (SLURM_RESTART_COUNT > 0) continues from the last checkpoint of its configuration."""
    monkeypatch.setenv("SLURM_JOB_ID", "81")
    cfg = make_cfg(["experiment=mlp_mnist", "trainer.max_epochs=2", "model/scheduler=cosine"], tmp_path, data_dir)
    run(cfg)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    again = make_cfg(["experiment=mlp_mnist", "trainer.max_epochs=3", "model/scheduler=cosine"], tmp_path, data_dir)
    again.paths.output_dir = str(tmp_path / "logs" / "mlp_mnist" / "runs" / "requeued")  # as ${now} would name it
    run(again)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 9 and not (tmp_path / "logs" / "mlp_mnist" / "runs" / "requeued").exists()
