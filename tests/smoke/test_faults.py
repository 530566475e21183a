"""Faults: a run killed with SIGKILL mid-training resumes from its last checkpoint in the same W&B run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers import SMOKE
from lab.logging import read_wandb_records
from lab.run import WANDB_ID_FILE

EPOCHS = 8
KEEP = [o for o in SMOKE if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches", "logger=",
                                              "data.batch_size"))]


def lab_cmd(tmp_path: Path, data_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "lab", "experiment=mlp_mnist", *KEEP, "logger=default", "data.batch_size=2",
            f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=60", f"paths.data_dir={data_dir}",
            f"paths.log_dir={tmp_path}/logs", *extra]


def test_sigkill_then_resume_continues_the_same_wandb_run(tmp_path, data_dir):
    run_dir = tmp_path / "logs" / "mlp_mnist" / "runs" / "first"
    # Each run starts its own W&B service: an inherited one (WANDB_SERVICE, from earlier in-process tests)
    # would outlive the killed run and keep its id "in use", as no real user's fresh shell does.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(lab_cmd(tmp_path, data_dir, [f"hydra.run.dir={run_dir}"]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    seen, deadline = set(), time.time() + 240
    try:
        while time.time() < deadline and len(seen) < 2:  # two checkpoints written: epochs 0 and 1 done
            if last.is_file():
                seen.add(last.stat().st_mtime_ns)
            time.sleep(0.05)
        time.sleep(0.4)  # into the next epoch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert len(seen) >= 2 and proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=False)["epoch"]  # the checkpoint resume will start from
    assert killed_at < EPOCHS - 1  # it did not get to finish
    run_id = (run_dir / WANDB_ID_FILE).read_text()

    done = subprocess.run(lab_cmd(tmp_path, data_dir, ["resume=true", f"hydra.run.dir={tmp_path}/ignored"]), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(last, weights_only=False)["epoch"] == EPOCHS - 1
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
    assert (run_dir / WANDB_ID_FILE).read_text() == run_id

    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)  # the same W&B run, twice
    def val_epochs(run: Path) -> set[int]:
        return {int(rec["history"]["item"]["epoch"]) for rec in read_wandb_records(run)
                if rec["type"] == "history" and "val/acc" in rec["history"]["item"]}

    second = val_epochs(runs[1])
    assert second == set(range(killed_at + 1, EPOCHS))  # continued right after the checkpoint, to the end
    try:
        first = val_epochs(runs[0])
    except subprocess.CalledProcessError:  # the kill can leave W&B's own file torn mid-record
        first = set()
    assert all(e <= killed_at + 1 for e in first)  # duplicated history: at most the epoch the kill cut short
    # Not asserted: W&B's writer is asynchronous, so records logged in the last moments before SIGKILL
    # (even before the checkpoint) can be missing from the first run's history.
