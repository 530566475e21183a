"""Faults: a run killed with SIGKILL mid-training resumes from its last checkpoint in the same W&B run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import SMOKE
from lab.layout import RunLayout
from lab.loggers import (
    WandbLogger,
    fill_resumed_history,
    finish_wandb,
    read_csv_history,
    read_wandb_records,
    wandb_logged,
)

EPOCHS = 8
KEEP = [o for o in SMOKE if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches", "logger=",
                                              "data.batch_size"))]


# per experiment: overrides giving EPOCHS epochs of about half a second, and its per-epoch metric
RUNS = {
    # (with early stopping off: the preset's patience could end the run before the epoch the test kills it in)
    "mlp_mnist": ([*KEEP, "data.batch_size=2", f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=60",
                   "callbacks.early_stopping.patience=100"],
                  "val/acc"),
    "ppo_cartpole": ([f"agent.total_timesteps={EPOCHS * 2048}", "agent.eval_freq=2048", "agent.log_interval=256",
                      "agent.eval_episodes=2"], "eval/return"),
}


def lab_cmd(experiment: str, tmp_path: Path, data_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "lab", f"experiment={experiment}", *RUNS[experiment][0], "logger=default",
            f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path}/logs", *extra]


def logged_in_epoch(run_dir: Path, epoch: int) -> bool:
    """Whether the run's CSV log has a row of `epoch` (the file may be half written: then not yet)."""
    try:
        rows = read_csv_history([run_dir / "csv" / "version_0"])
    except (OSError, ValueError, KeyError, IndexError):
        return False
    return any(r.get("epoch") is not None and int(r["epoch"]) >= epoch for r in rows)


@pytest.mark.parametrize("experiment", RUNS)
def test_sigkill_then_resume_continues_the_same_wandb_run(experiment, tmp_path, data_dir):
    run_dir = tmp_path / "logs" / experiment / "runs" / "first"
    # Each run starts its own W&B service: an inherited one (WANDB_SERVICE, from earlier in-process tests)
    # would outlive the killed run and keep its id "in use", as no real user's fresh shell does.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(lab_cmd(experiment, tmp_path, data_dir, [f"hydra.run.dir={run_dir}"]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    # The kill point is an event, not a timer: the first metric that epoch 2 logs (the CSV is saved at every
    # log call), after the checkpoint of epoch 1, while W&B still holds its newest records in memory.
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and not logged_in_epoch(run_dir, 2):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=False)["epoch"]  # the checkpoint resume will start from
    assert 1 <= killed_at < EPOCHS - 1  # killed in the middle, with at least two epochs checkpointed
    run_id = RunLayout(run_dir).wandb_id_file.read_text()

    done = subprocess.run(lab_cmd(experiment, tmp_path, data_dir, ["resume=true", f"hydra.run.dir={tmp_path}/x"]),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(last, weights_only=False)["epoch"] == EPOCHS - 1
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
    assert RunLayout(run_dir).wandb_id_file.read_text() == run_id

    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)  # the same W&B run, twice
    key = RUNS[experiment][1]

    def val_epochs(records: list[dict]) -> list[int]:  # (an RL run's closing evaluation has no epoch)
        items = [rec["history"]["item"] for rec in records if rec["type"] == "history"]
        return [int(item["epoch"]) for item in items if key in item and "epoch" in item]

    first_records = read_wandb_records(runs[0], complete=False)  # the kill can cut W&B's own file short
    first, second = val_epochs(first_records), val_epochs(read_wandb_records(runs[1]))
    # no epoch missing, and only the one the kill cut short logged twice
    assert sorted(set(first) | set(second)) == list(range(EPOCHS))
    assert set(first) & set(second) <= {killed_at + 1} and len(second) == len(set(second))
    # every value the killed run logged up to its checkpoint is in the W&B history (refilled from the CSV)
    csv_rows = read_csv_history([run_dir / "csv" / "version_0"])
    checkpointed = {(int(r["step"]), k) for r in csv_rows if r.get("epoch", EPOCHS) <= killed_at
                    for k in r if k not in ("step", "epoch")}
    assert checkpointed <= wandb_logged(first_records) | wandb_logged(read_wandb_records(runs[1]))


KILLED_RUN = """
import os, signal, sys
from lightning.pytorch.loggers import CSVLogger
from lab.loggers import WandbLogger
save_dir = sys.argv[1]
wandb_logger, csv_logger = WandbLogger(save_dir=save_dir, id="lost123", offline=True), CSVLogger(save_dir, name="csv")
for step in range(300):
    for lg in (wandb_logger, csv_logger):
        lg.log_metrics({"train/loss": step / 1000, "epoch": step // 100}, step=step)
        lg.save()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resumed_run_logs_what_the_killed_run_never_stored(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path)], env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    (first_dir,) = (tmp_path / "wandb").glob("offline-run-*-lost123")
    first = {s for s, k in wandb_logged(read_wandb_records(first_dir, complete=False)) if k == "train/loss"}
    assert len(first) < 300, "W&B stored every record before the kill: nothing here tests the refill any more"

    # killed right after the checkpoint of epoch 2, when W&B still held the newest records in memory
    resumed = WandbLogger(save_dir=str(tmp_path), id="lost123", offline=True)
    try:
        filled = fill_resumed_history(resumed, [tmp_path / "csv" / "version_0"], before_epoch=3)
        second_dir = Path(resumed.experiment.dir).parent
    finally:
        finish_wandb()
    second = [int(r["history"]["item"]["trainer/global_step"]) for r in read_wandb_records(second_dir)
              if r["type"] == "history" and "train/loss" in r["history"]["item"]]
    assert second and filled == 2 * len(second)  # train/loss and epoch at each step
    assert sorted(first.union(second)) == list(range(300))  # every checkpointed step, in one history
    assert not first.intersection(second) and second == sorted(second)  # nothing twice, in step order
