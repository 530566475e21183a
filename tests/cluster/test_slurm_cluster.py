"""SLURM through the lab's launchers on the real cluster of scripts/cluster.sh: a sweep as SLURM jobs with the same
summary as the local launcher; a dead job reported as failed; a cancelled job, then the sweep finished with
resume=true; DDP as a 2-task job (classifier, GAN, PPO) and as 2 nodes x 1 task; preemption by the time-limit
signal (supervised) and by a preemption signal (RL), each continuing the same run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cluster_helpers import final_states, lab, sacct, slurm_jobs, summary_rows, wait_for

from helpers import SMOKE
from lab.loggers import read_csv_history, read_wandb_records, wandb_logged

pytestmark = pytest.mark.cluster

SLURM = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=10"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
RL = ["logger=csv", "~callbacks.model_summary", "agent.eval_episodes=2", "agent.video=false",
      "env.max_episode_steps=60", "callbacks.progress_bar.plain=true", "env.num_envs=2", "agent.num_steps=32",
      "agent.batch_size=32", "agent.update_epochs=2"]


def supervised(data_dir: Path, experiment: str = "mlp_mnist") -> list[str]:
    # every epoch asked for runs: the presets' early stopping would end these runs on synthetic data
    return [f"experiment={experiment}", *SMOKE, f"paths.data_dir={data_dir}", "callbacks.early_stopping.patience=100"]


def slow(seconds: float) -> list[str]:
    return ["+callbacks.slow._target_=helpers.SlowSteps", f"+callbacks.slow.seconds={seconds}"]


def job_log(sweep: Path, job: str, task: int = 0) -> str:
    folder = sweep / ".submitit" / job
    return "".join(p.read_text() for p in sorted(folder.glob(f"*_{task}_log.*")))


def test_sweep_on_slurm_writes_the_same_summary_as_the_local_launcher(tmp_path, data_dir):
    args = ["-m", *supervised(data_dir), "seed=0,1,2"]
    local = lab([*args, f"hydra.sweep.dir={tmp_path / 'local'}"], tmp_path / "logs")
    assert local.returncode == 0, local.stderr[-3000:]
    proc = lab([*args, *SLURM, f"hydra.sweep.dir={tmp_path / 'slurm'}"], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]

    jobs = slurm_jobs(tmp_path / "slurm")
    assert len(jobs) == 3 and final_states(jobs) == ["COMPLETED"] * 3
    script = next((tmp_path / "slurm" / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --signal=USR1@90" in script and "#SBATCH --ntasks-per-node=1" in script

    def by_overrides(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
        return {r["overrides"]: {k: v for k, v in r.items() if k not in ("rank", "job")} for r in rows}

    ours, theirs = by_overrides(summary_rows(tmp_path / "slurm")), by_overrides(summary_rows(tmp_path / "local"))
    assert sorted(ours) == sorted(theirs) and len(ours) == 3
    for key, row in ours.items():
        assert row["status"] == theirs[key]["status"] == "ok"
        assert row.keys() == theirs[key].keys()
        for metric, value in row.items():
            if metric not in ("overrides", "status"):  # same seeds, same data, one thread: the same numbers
                assert float(value) == pytest.approx(float(theirs[key][metric]), rel=1e-4, abs=1e-6), metric
    for sweep in ("slurm", "local"):  # the HTML report reads the SLURM jobs' logs as it reads local ones
        report = subprocess.run([sys.executable, "-m", "lab.report", str(tmp_path / sweep)], capture_output=True,
                                text=True, timeout=300)
        assert report.returncode == 0, report.stderr[-2000:]
        html = (tmp_path / sweep / "report.html").read_text()
        assert all(f"seed={i}" in html for i in range(3))
    # the seeds' IQM (rliable) in both summaries
    iqm = [line for line in (tmp_path / "slurm" / "summary.md").read_text().splitlines() if "| 3 |" in line]
    assert iqm and iqm == [line for line in (tmp_path / "local" / "summary.md").read_text().splitlines()
                           if "| 3 |" in line]


def test_a_job_that_dies_without_a_result_is_reported_failed(tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=2, slurm_partition="lab")
    job = executor.submit(os._exit, 3)  # the process ends at once, without writing a result
    wait_for(lambda: job.done(force_check=True), 60, "submitit seeing the job end (sacct)")
    assert job.state == "FAILED"  # from sacct (slurmdbd): not "UNKNOWN", so submitit does not wait forever
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="state: FAILED"):
        job.result()


def test_a_cancelled_job_fails_the_sweep_which_resume_then_finishes(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    args = ["-m", *supervised(data_dir), "seed=0,1", "trainer.max_epochs=3", *slow(0.4), *SLURM,
            f"hydra.sweep.dir={sweep}"]
    proc = lab(args, tmp_path / "logs", background=True)
    try:
        wait_for(lambda: (sweep / "1" / ".hydra").is_dir(), 120, "job 1 starting", proc)
        job = next(j for j in slurm_jobs(sweep) if j.endswith("_1"))
        subprocess.run(["scancel", job], check=True)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert f"SLURM job {job} ended without a result (state CANCELLED" in stderr
    rows = {r["job"]: r for r in summary_rows(sweep)}  # written before the failure was raised
    assert rows["0"]["status"] == "ok" and rows["1"]["status"] == "failed"
    assert final_states([job])[0].startswith("CANCELLED")

    proc = lab([*args, "resume=true"], tmp_path / "logs")  # the same command, resume=true
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["job"]: r for r in summary_rows(sweep)}
    assert sorted(rows) == ["0", "1"] and all(r["status"] == "ok" for r in rows.values())
    for j in ("0", "1"):  # each job continued or finished in its own folder: 3 epochs of 3 steps (SMOKE)
        ckpt = torch.load(sweep / j / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 9 and ckpt["epoch"] == 2


@pytest.mark.parametrize("experiment", ["mlp_mnist", "gan_mnist", "ppo_cartpole"])
def test_ddp_as_a_two_task_slurm_job(experiment, tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    if experiment == "ppo_cartpole":
        args = [f"experiment={experiment}", *RL, "agent.total_timesteps=1024", "agent.eval_freq=512"]
    else:  # mlp_mnist: a whole epoch, to count the steps of the 2 processes
        args = [*supervised(data_dir, experiment), *(["trainer.limit_train_batches=null"] * (experiment == "mlp_mnist"))]
    proc = lab(["-m", *args, *DDP, *SLURM, f"hydra.sweep.dir={sweep}"], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = slurm_jobs(sweep)
    assert "#SBATCH --ntasks-per-node=2" in next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    # Lightning took its two ranks from SLURM (SLURM_PROCID), one per task
    assert "MEMBER: 1/2" in job_log(sweep, job, 0) and "MEMBER: 2/2" in job_log(sweep, job, 1)
    assert [r["status"] for r in summary_rows(sweep)] == ["ok"]
    ckpt = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    if experiment == "mlp_mnist":  # 300 images over 2 processes, batch 32 each: 5 steps (1 process: 10)
        assert ckpt["global_step"] == 5
    if experiment == "ppo_cartpole":  # the budget counts env steps over both processes
        assert ckpt["agent_state"]["env_steps"] == 1024


def test_two_nodes_one_process_each_end_with_identical_weights(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    proc = lab(["-m", *supervised(data_dir), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1",
                "trainer.num_nodes=2", "trainer.max_epochs=2", *SLURM, "hydra.launcher.partition=multinode",
                "+callbacks.weights._target_=helpers.SaveRankWeights",
                "+callbacks.weights.dirpath=${paths.output_dir}", f"hydra.sweep.dir={sweep}"], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = slurm_jobs(sweep)
    assert sacct(job)[0]["nodes"] == "lab-node[1-2]"
    saved = [torch.load(sweep / "0" / f"weights_rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert sorted(s["node"] for s in saved) == ["lab-node1", "lab-node2"]  # one process on each node
    first, second = (s["state_dict"] for s in saved)
    assert first.keys() == second.keys() and len(first) > 0
    for k in first:
        assert torch.equal(first[k], second[k]), k
    assert sum(v.abs().sum() for v in first.values() if v.is_floating_point()) > 0


def csv_steps(run_dir: Path, key: str) -> list[list[int]]:
    """The steps at which each CSV logger version (one per start of the job) logged `key`."""
    versions = sorted((run_dir / "csv").glob("version_*"), key=lambda d: int(d.name.removeprefix("version_")))
    return [[int(r["step"]) for r in read_csv_history([d]) if key in r] for d in versions]


def preemptions(log: str) -> list[int]:
    return [int(s) for s in re.findall(r"SLURM signal: saved \S+ at global step (\d+) and requeued", log)]


def test_time_limit_signal_checkpoints_requeues_and_continues_the_run(tmp_path, data_dir):
    """The job's time limit is 2 minutes and SLURM signals USR1 60 s before it, which it does at its first check of
    time limits (every 30 s) with at most 90 s left: 30 to 60 s after each start. The run's 8 epochs (80 steps of
    0.75 s) need more than that, so it is saved and requeued at least once, and continues until they are done."""
    sweep = tmp_path / "sweep"
    proc = lab(["-m", *supervised(data_dir), "logger=default", "trainer.max_epochs=8",
                "trainer.limit_train_batches=null", *slow(0.75),
                "hydra/launcher=slurm", "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60",
                f"hydra.sweep.dir={sweep}"], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = slurm_jobs(sweep)
    assert final_states([job]) == ["COMPLETED"]  # (waits for slurmdbd to record the end of the last start)
    states = [r["state"] for r in sacct(job, all_records=True)]
    assert states[-1] == "COMPLETED" and "REQUEUED" in states[:-1]
    run = sweep / "0"
    saved_at = preemptions((run / "mlp_mnist.log").read_text())
    assert len(saved_at) == states.count("REQUEUED") and saved_at == sorted(saved_at) and 0 < saved_at[0] < 80
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == ["0", "multirun.yaml",
                                                                                     "summary.csv", "summary.md"]
    assert summary_rows(sweep)[0]["status"] == "ok"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 80 and not (run / "checkpoints" / "preempted.ckpt").exists()

    # every step logged once: each start of the job continued where the checkpoint left off
    steps = csv_steps(run, "train/loss_step")
    assert len(steps) == len(saved_at) + 1
    assert [s for version in steps for s in version] == list(range(80))
    for before, after, at in zip(steps, steps[1:], saved_at, strict=False):
        assert before[-1] == at - 1 and after[0] == at
    # one W&B run (one id) across the starts, with no (step, metric) logged by two of them
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == len(saved_at) + 1 and len({p.name.rsplit("-", 1)[1] for p in runs}) == 1
    logged = [{(s, k) for s, k in wandb_logged(read_wandb_records(p)) if k.startswith("train/")} for p in runs]
    assert all(len(a & b) == 0 for i, a in enumerate(logged) for b in logged[i + 1:])
    assert {s for s, k in set().union(*logged) if k == "train/loss_step"} == set(range(80))


def signalled_after_first_checkpoint(args: list[str], tmp_path: Path) -> Path:
    """A one-job SLURM sweep that gets USR1 (what SLURM sends before preempting) once its first epoch's
    checkpoint exists; it must end well, having been requeued. Returns the run folder."""
    sweep = tmp_path / "sweep"
    proc = lab(["-m", *args, *SLURM, f"hydra.sweep.dir={sweep}"], tmp_path / "logs", background=True)
    run = sweep / "0"
    try:
        wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file(), 180, "the first checkpoint", proc)
        (job,) = slurm_jobs(sweep)
        subprocess.run(["scancel", "--signal=USR1", job], check=True)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "REQUEUED" in [r["state"] for r in sacct(job, all_records=True)]
    return run


def test_preemption_signal_continues_an_rl_run(tmp_path):
    sweep = tmp_path / "sweep"
    run = signalled_after_first_checkpoint(["experiment=ppo_cartpole", *RL, "agent.total_timesteps=2048",
                                            "agent.eval_freq=512", "agent.log_interval=64", *slow(0.3)], tmp_path)
    saved_at = preemptions((run / "ppo_cartpole.log").read_text())
    assert len(saved_at) == 1
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["agent_state"]["env_steps"] == 2048 and last["global_step"] > saved_at[0]
    steps = csv_steps(run, "train/learning_rate")  # logged every iteration (64 env steps), each once
    assert len(steps) == 2 and len(steps[0]) > 0 and len(steps[1]) > 0
    assert max(steps[0]) < min(steps[1]) and sorted(steps[0] + steps[1]) == list(range(64, 2048 + 1, 64))
    assert summary_rows(sweep)[0]["status"] == "ok" and float(summary_rows(sweep)[0]["eval/return"]) > 0


def test_preemption_of_a_ddp_job_is_decided_by_all_ranks(tmp_path, data_dir):
    """USR1 to both tasks of a 2-process job: the ranks agree on the step, rank 0 saves and requeues, both exit;
    the requeued job continues on 2 ranks to the end (5 steps an epoch for 300 images, batch 32 per process)."""
    sweep = tmp_path / "sweep"
    run = signalled_after_first_checkpoint([*supervised(data_dir), "trainer.limit_train_batches=null",
                                            "trainer.max_epochs=4", *slow(0.5), *DDP], tmp_path)
    (saved_at,) = preemptions((run / "mlp_mnist.log").read_text())
    assert 5 <= saved_at < 20
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 20 and summary_rows(sweep)[0]["status"] == "ok"
    steps = csv_steps(run, "train/loss_step")  # rank 0's logger, once per start of the job
    assert [s for version in steps for s in version] == list(range(20))
