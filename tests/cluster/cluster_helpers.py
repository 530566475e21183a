"""Helpers of the cluster tests: the lab's CLI with tests/ importable in SLURM jobs, sweep summaries, sacct."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lab.paths import ROOT


def lab(args: list[str], log_dir: Path, background: bool = False, timeout: float = 900,
        **env: str) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python -m lab ...` as a user runs it, with tests/ importable in the SLURM jobs (helpers.SlowSteps)."""
    cmd = [sys.executable, "-m", "lab", *args, f"paths.log_dir={log_dir}"]
    full_env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1",
                    PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]), **env)
    if background:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    with (sweep / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def slurm_jobs(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep (`<array>_<task>`, or `<id>` for a single job), from submitit's folders: those
    with the jobs' logs."""
    return sorted(p.name for p in (sweep / ".submitit").iterdir()
                  if re.fullmatch(r"\d+(_\d+)?", p.name) and any(p.glob("*_log.out")))


def sacct(job: str, all_records: bool = False) -> list[dict[str, str]]:
    """sacct's records of a job (its allocation only; `all_records`: every start of a requeued job too)."""
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,NodeList", "-j", job] + (["-D"] if all_records else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [dict(zip(("id", "state", "nodes"), line.split("|"), strict=True)) for line in out.splitlines() if line]


ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED", "RESIZING")


def final_states(jobs: list[str], seconds: float = 60) -> list[str]:
    """The end state of each job as sacct records it. slurmctld sends a job's end to slurmdbd asynchronously, so a
    job submitit already saw finish (its result file) may still read RUNNING for a moment on a loaded machine."""
    def states() -> list[str]:
        return [r["state"] for job in jobs for r in sacct(job)]
    deadline = time.time() + seconds
    while any(s.startswith(ACTIVE) or not s for s in states()) and time.time() < deadline:
        time.sleep(0.5)
    return states()


def wait_for(condition, seconds: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what}")
