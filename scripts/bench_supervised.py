"""Train supervised experiments with their default configs over several seeds; print a results table.

    python scripts/bench_supervised.py cnn_mnist --seeds 0 1 2
    python scripts/bench_supervised.py mlp_mnist lstm_seqmnist --seeds 0 -o trainer.max_epochs=3

Each run goes through lab.run.run (the same path as `python -m lab`), logs to CSV under
logs/bench/, and is tested on the full official test set. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import lab  # noqa: F401
from lab.paths import CONFIG_DIR, ROOT
from lab.run import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = p.parse_args()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    rows = []
    for exp in args.experiments:
        for seed in args.seeds:
            overrides = [f"experiment={exp}", f"seed={seed}", "logger=csv", "callbacks.progress_bar.plain=true",
                         *args.override]
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
            with open_dict(cfg):
                cfg.paths.output_dir = str(ROOT / "logs" / "bench" / stamp / f"{exp}_seed{seed}")
            t0 = time.perf_counter()
            metrics = run(cfg)
            seconds = time.perf_counter() - t0
            rows.append((exp, seed, cfg.trainer.max_epochs, metrics["test/acc"], metrics["test/f1"], seconds))
            print(f"[bench] {exp} seed={seed}: test/acc={metrics['test/acc']:.4f} ({seconds:.0f} s)", flush=True)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; "
          f"overrides: {' '.join(args.override) or 'none'}\n")
    print("| experiment | seed | epochs | test acc (%) | test macro-F1 (%) | wall-clock (s) |")
    print("|---|---|---|---|---|---|")
    for exp, seed, epochs, acc, f1, sec in rows:
        print(f"| {exp} | {seed} | {epochs} | {100 * acc:.2f} | {100 * f1:.2f} | {sec:.0f} |")
    for exp in args.experiments:
        accs = [r[3] for r in rows if r[0] == exp]
        secs = [r[5] for r in rows if r[0] == exp]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| **{exp} mean** | {len(accs)} seeds | | {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} | "
              f"| {statistics.mean(secs):.0f} |")


if __name__ == "__main__":
    main()
