"""DDP on this CPU: 2 processes against 1 (gloo), for the classifier and PPO. Prints throughput and final metric.

    python scripts/bench_ddp.py                       # mlp_mnist (3 epochs) and ppo_cartpole (1e5 env steps)
    python scripts/bench_ddp.py --experiments mlp_mnist -o trainer.max_epochs=1

Each run is `python -m lab experiment=<e> trainer=ddp trainer.accelerator=cpu trainer.devices=<n>` with one
torch thread per process. Classifier throughput = training images per second of wall-clock (whole run,
process start to exit); PPO throughput = env steps per second of training time (evaluations excluded).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime

from lab.paths import ROOT

DEFAULTS = {"mlp_mnist": ["trainer.max_epochs=3"], "ppo_cartpole": ["agent.video=false"]}
METRIC = {"mlp_mnist": "test/acc", "ppo_cartpole": "eval/return"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", nargs="+", default=["mlp_mnist", "ppo_cartpole"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--override", action="append", default=[])
    args = p.parse_args()
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    rows = []
    for exp in args.experiments:
        for devices in (1, 2):
            run_dir = ROOT / "logs" / "bench_ddp" / stamp / f"{exp}_{devices}"
            strategy = ["trainer=ddp"] if devices > 1 else []
            cmd = [sys.executable, "-m", "lab", f"experiment={exp}", *strategy, "trainer.accelerator=cpu",
                   f"trainer.devices={devices}", f"seed={args.seed}", "logger=csv", "callbacks.progress_bar.plain=true",
                   f"hydra.run.dir={run_dir}", *DEFAULTS.get(exp, []), *args.override]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            m = json.loads((run_dir / "result.json").read_text())["metrics"]
            if exp.startswith(("ppo_", "dqn_")):
                throughput, unit = m["time/sps"], "env steps/s (training)"
            else:
                epochs = next(int(o.split("=")[1]) for o in [*DEFAULTS.get(exp, []), *args.override]
                              if o.startswith("trainer.max_epochs="))
                throughput, unit = 55_000 * epochs / wall, "train images/s (whole run)"
            rows.append((exp, devices, throughput, unit, m.get(METRIC.get(exp, ""), float("nan")), wall))
            print(f"{exp} devices={devices}: {throughput:.0f} {unit}; {METRIC.get(exp)} "
                  f"{rows[-1][4]:.4f}; wall-clock {wall:.1f} s", flush=True)
    print("\n| experiment | processes | throughput | unit | final metric | wall-clock s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]} | {r[4]:.4f} | {r[5]:.1f} |")
    for exp in args.experiments:
        one, two = [r for r in rows if r[0] == exp]
        print(f"{exp}: 2 processes / 1 = {two[2] / one[2]:.2f}x throughput")


if __name__ == "__main__":
    main()
