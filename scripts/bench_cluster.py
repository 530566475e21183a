"""The cluster paths, timed on the local cluster of scripts/cluster.sh (`make bench-cluster` starts it):

    python scripts/bench_cluster.py                 # all three
    python scripts/bench_cluster.py --only latency sweep

1. latency: submit-to-start of a SLURM job through submitit (the job returns the time it started), `--jobs` times.
2. sweep: one sweep of `--points` points (`experiment=mlp_mnist seed=0..N-1`, shortened by `--sweep-args`), wall
   time with the local launcher (one job after another) and with hydra/launcher=slurm (jobs side by side, as many
   as the node's CPUs hold at cpus_per_task=1).
3. optuna: trials per minute of an Optuna study (ppo_cartpole, tiny budget) in SQLite and in PostgreSQL, with 1
   worker and with 2 workers (two sweeps on the same study at once), `--trials` trials each.

Every figure is printed (and written as markdown to --out), never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from lab.paths import ROOT
from lab.tables import markdown_table

TINY_RL = ["experiment=ppo_cartpole", "hparams_search=ppo_cartpole_optuna", "logger=csv", "~callbacks.model_summary",
           "agent.total_timesteps=512", "agent.eval_freq=256", "agent.eval_episodes=2", "agent.video=false",
           "env.max_episode_steps=100", "env.num_envs=2", "agent.num_steps=64", "agent.batch_size=64",
           "agent.update_epochs=2", "callbacks.progress_bar.plain=true", "agent.learning_rate=tag(log,interval(1e-4,1e-2))",
           "agent.ent_coef=interval(0.0,0.02)", "hydra.sweeper.params=null", "hydra.sweeper.seeds=null"]


def lab(args: list[str], log_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")  # as the SLURM jobs (cpus_per_task=1)
    return subprocess.Popen([sys.executable, "-m", "lab", *args, f"paths.log_dir={log_dir}"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a benchmark command failed:\n{err[-3000:]}")


def timed(procs_fn) -> float:
    t0 = time.perf_counter()
    wait_all(procs_fn())
    return time.perf_counter() - t0


def storage_url() -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), "status"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("the local cluster is not up: `scripts/cluster.sh up` (or `make bench-cluster`)\n" + out.stdout)
    return next(line.strip() for line in out.stdout.splitlines() if line.startswith("postgresql+"))


def bench_latency(n: int, work: Path) -> list[str]:
    import submitit

    executor = submitit.AutoExecutor(folder=work / "latency", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition="lab", cpus_per_task=1)
    delays = []
    for _ in range(n):  # one at a time: the latency of a free cluster, not of a queue
        submitted = time.time()
        job = executor.submit(time.time)
        delays.append(job.result() - submitted)
    return ["## Submit-to-start latency (submitit -> sbatch -> the job's first line of Python)", "",
            f"{n} jobs, one after another: median {statistics.median(delays):.2f} s, min {min(delays):.2f} s, "
            f"max {max(delays):.2f} s", ""]


def bench_sweep(points: int, extra: list[str], work: Path) -> list[str]:
    seeds = ",".join(str(i) for i in range(points))
    base = ["-m", "experiment=mlp_mnist", f"seed={seeds}", "logger=csv", *extra]
    local = timed(lambda: [lab([*base, f"hydra.sweep.dir={work / 'local'}"], work / "logs")])
    slurm = timed(lambda: [lab([*base, "hydra/launcher=slurm", f"hydra.sweep.dir={work / 'slurm'}"], work / "logs")])
    return [f"## A sweep of {points} points: `python -m lab -m experiment=mlp_mnist seed=0..{points - 1} "
            f"{' '.join(extra)}`", "", *markdown_table(["launcher", "wall time", "per point"], [
                ["local (basic launcher: one job after another)", f"{local:.1f} s", f"{local / points:.1f} s"],
                [f"hydra/launcher=slurm (cpus_per_task=1, {os.cpu_count()} CPUs on the node)", f"{slurm:.1f} s",
                 f"{slurm / points:.1f} s"]]), "", f"SLURM / local: {slurm / local:.2f}x the wall time", ""]


def bench_optuna(trials: int, pg: str, work: Path) -> list[str]:
    rows = []
    for name, url in (("SQLite", f"sqlite:///{work}/optuna.db"), ("PostgreSQL", pg)):
        for workers in (1, 2):
            study = f"bench-{uuid.uuid4().hex[:8]}"
            args = ["-m", *TINY_RL, f"hydra.sweeper.storage={url}", f"hydra.sweeper.study_name={study}",
                    f"hydra.sweeper.n_trials={trials}"]
            sweeps = [[*args, f"hydra.sweep.dir={work / study / str(w)}"] for w in range(workers)]
            seconds = timed(lambda sweeps=sweeps: [lab(a, work / "logs") for a in sweeps])
            rows.append([name, workers, trials, f"{seconds:.1f} s", f"{60 * trials / seconds:.1f}"])
    return ["## Optuna trials per minute (ppo_cartpole, 512 env steps a trial)", "",
            *markdown_table(["storage", "workers", "trials", "wall time", "trials / minute"], rows), ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=["latency", "sweep", "optuna"], default=["latency", "sweep", "optuna"])
    p.add_argument("--jobs", type=int, default=5)
    p.add_argument("--points", type=int, default=8)
    p.add_argument("--sweep-args", nargs="*", default=["trainer.max_epochs=1", "trainer.limit_train_batches=100",
                                                       "trainer.limit_val_batches=20", "trainer.limit_test_batches=20",
                                                       "callbacks.progress_bar.plain=true"])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_cluster.md")
    args = p.parse_args()
    pg = storage_url()
    lines = ["# scripts/bench_cluster.py", "", f"Machine: {os.cpu_count()} CPUs; the local cluster of "
             "scripts/cluster.sh (SLURM 2 node entries on this host, PostgreSQL on 127.0.0.1).", ""]
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        work = Path(tmp)
        for part, bench in (("latency", lambda: bench_latency(args.jobs, work)),
                            ("sweep", lambda: bench_sweep(args.points, args.sweep_args, work)),
                            ("optuna", lambda: bench_optuna(args.trials, pg, work))):
            if part in args.only:
                figures = bench()
                print("\n".join(figures), flush=True)
                lines += figures
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
