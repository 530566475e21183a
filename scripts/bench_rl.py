"""Our agents against Stable-Baselines3, side by side: same experiment config, hyperparameters and seeds.

    python scripts/bench_rl.py ppo_cartpole --seeds 0 1 2 3 4
    python scripts/bench_rl.py dqn_cartpole --seeds 0 1 2 3 4
    python scripts/bench_rl.py ppo_lunarlander ppo_pendulum --seeds 0 --agents ours

Every run is `python -m lab experiment=<e> agent=<ppo|sb3_ppo|dqn|sb3_dqn> seed=<s>` in its own process
(each with its own default torch threads, as users run them: ours agent.torch_threads=1, SB3 torch's
default; `--threads N` sets OMP_NUM_THREADS and agent.torch_threads=N for both), evaluating 10 deterministic episodes every 5,000 env steps; evaluation
time is excluded from the training clock (`time/train_seconds`, logged at each evaluation). "Solved" = the
first evaluation whose mean return reaches the threshold; its env step and training seconds are the
time-to-solve. Env steps per second = env steps / training seconds at the last evaluation. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from lab.paths import ROOT
from lab.tables import markdown_table

# by env name, or by experiment name (which wins): the zoo's SAC solves Pendulum to -200 in its 20,000 steps
THRESHOLDS = {"cartpole": 475.0, "lunarlander": 200.0, "pendulum": -250.0, "acrobot": -100.0, "halfcheetah": 3000.0,
              "sac_pendulum": -200.0, "frozenlake": 1.0, "taxi": 7.0}
SB3 = {"ppo": "sb3_ppo", "dqn": "sb3_dqn", "sac": "sb3_sac"}


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    rows = []
    for path in sorted(run_dir.glob("**/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def summarize(rows: list[dict[str, float]], threshold: float) -> dict[str, float]:
    evals = [r for r in rows if "eval/return" in r and "time/train_seconds" in r]
    final = [r for r in rows if "eval/return" in r and "time/train_seconds" not in r]
    out: dict[str, float] = {"solve_step": math.nan, "solve_seconds": math.nan, "sps": math.nan,
                             "best_eval": max((r["eval/return"] for r in evals), default=math.nan),
                             "final_eval": final[-1]["eval/return"] if final else math.nan,
                             "train_seconds": evals[-1]["time/train_seconds"] if evals else math.nan}
    for r in evals:
        if r["eval/return"] >= threshold:
            out["solve_step"], out["solve_seconds"] = r["step"], r["time/train_seconds"]
            break
    if evals:
        out["sps"] = evals[-1]["step"] / max(evals[-1]["time/train_seconds"], 1e-9)
    return out


def med(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def run_one(exp: str, agent: str, seed: int, run_dir: Path, threshold: float, env: dict[str, str],
            overrides: list[str], lab_agent: bool) -> dict[str, float]:
    """Train one agent on one seed in its own process; its summary with the process's wall-clock time."""
    cmd = [sys.executable, "-m", "lab", f"experiment={exp}", f"agent={agent}", f"seed={seed}", "logger=csv",
           "agent.eval_freq=5000", "agent.eval_episodes=10", "agent.video=false", f"hydra.run.dir={run_dir}"]
    if lab_agent:  # the lab's agents run under Lightning; SB3's loop has no callbacks (it refuses their settings)
        cmd.append("callbacks.progress_bar.plain=true")
    cmd += overrides
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    s = summarize(read_metrics(run_dir), threshold)
    s["wall"] = wall
    print(f"{exp} {agent} seed {seed}: solved at step {s['solve_step']:.0f} after {s['solve_seconds']:.1f} s "
          f"training; {s['sps']:.0f} steps/s; best eval {s['best_eval']:.1f}; final eval "
          f"{s['final_eval']:.1f}; process wall-clock {wall:.1f} s", flush=True)
    return s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--agents", nargs="+", default=["ours", "sb3"], choices=["ours", "sb3"])
    p.add_argument("--threads", type=int, help="torch threads for both (default: each side's own default)")
    p.add_argument("--threshold", type=float, help="solve threshold (default by env)")
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    p.add_argument("--ours", action="append", default=[], help="extra Hydra override for our agents only, e.g. "
                   "agent.compile=true or env.vectorization=vector (repeatable)")
    args = p.parse_args()
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    env = dict(os.environ, WANDB_MODE="offline")
    threads = []
    if args.threads is not None:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        threads = [f"agent.torch_threads={args.threads}"]
    table, notes = [], []
    for exp in args.experiments:
        algo = exp.split("_")[0]
        env_name = exp.split("_", 1)[1]
        threshold = (args.threshold if args.threshold is not None
                     else THRESHOLDS.get(exp, THRESHOLDS.get(env_name, math.inf)))
        per_agent: dict[str, list[dict[str, float]]] = {}
        # Interleaved (seed 0 ours, seed 0 SB3, seed 1 ours, ...): a shared machine's speed drifts by tens of
        # percent over minutes, and each pair then sees the same machine.
        for seed in args.seeds:
            for who in args.agents:
                agent = algo if who == "ours" else SB3[algo]
                s = run_one(exp, agent, seed, ROOT / "logs" / "bench_rl" / stamp / f"{exp}_{agent}_{seed}", threshold,
                            env, [*threads, *args.override, *(args.ours if who == "ours" else [])], lab_agent=who == "ours")
                per_agent.setdefault(who, []).append(s)
        for who, runs in per_agent.items():
            solved = sum(not math.isnan(r["solve_step"]) for r in runs)
            table.append((exp, SB3[algo] if who == "sb3" else algo, f"{solved}/{len(runs)}", med([r["solve_step"] for r in runs]),
                          med([r["solve_seconds"] for r in runs]), med([r["sps"] for r in runs]),
                          med([r["final_eval"] for r in runs]), med([r["train_seconds"] for r in runs])))
        if "ours" in per_agent and "sb3" in per_agent:
            ours, sb3 = table[-2], table[-1]
            table.append((exp, "ours / SB3", "", ours[3] / sb3[3], ours[4] / sb3[4], ours[5] / sb3[5], math.nan, ours[7] / sb3[7]))
            paired = [a["sps"] / b["sps"] for a, b in zip(per_agent["ours"], per_agent["sb3"], strict=True)]
            notes.append(f"{exp}: env steps/s ours / SB3 per seed (run back to back): "
                         + ", ".join(f"{r:.2f}" for r in paired) + f"; median {med(paired):.2f}")

    who_threads = f"{args.threads} torch thread(s) for both" if args.threads else "each side's default torch threads"
    print(f"\nthreshold per env: {THRESHOLDS}; {who_threads}; ours with {args.ours or 'the presets'}; "
          f"medians over seeds {args.seeds}")
    head = ("experiment", "agent", "solved", "steps to solve", "s to solve", "env steps/s", "final eval", "train s")
    print("\n".join(markdown_table(head, (
        [c if isinstance(c, str) else "n/a" if math.isnan(c) else f"{c:.3g}" if row[1] == "ours / SB3" else f"{c:.1f}"
         for c in row] for row in table))))
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
