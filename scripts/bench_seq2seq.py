"""The primers' claim, measured: sequence accuracy by input length for an encoder-decoder without
attention, with additive attention, and the Transformer, on the same budget and seeds.

    python scripts/bench_seq2seq.py                      # seq2seq_reverse, seeds 0 1 2, its own budget
    python scripts/bench_seq2seq.py --seeds 0 -o trainer.max_epochs=1

Each run goes through lab.run.run (the path of `python -m lab`) and logs to CSV under logs/bench/<date>/.
The table gives, per model and source-length bucket (data.length_buckets), the median test sequence
accuracy over seeds and its range. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import lab  # noqa: F401
from lab.paths import CONFIG_DIR, ROOT
from lab.run import run
from lab.tables import markdown_table

MODELS = {
    "no attention (GRU)": ["model.net.attention=none"],
    "additive attention (GRU)": ["model.net.attention=additive"],
    "Transformer": ["model/net=transformer", "model.optimizer.lr=1e-3"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="seq2seq_reverse")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override for every run")
    args = p.parse_args()
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    rows: dict[str, list[tuple[dict[str, float], float]]] = {}
    buckets: list[str] = []
    for name in args.models:
        for seed in args.seeds:
            overrides = [f"experiment={args.experiment}", f"seed={seed}", "logger=csv",
                         "callbacks.progress_bar.plain=true", *MODELS[name], *args.override]
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
            with open_dict(cfg):
                slug = name.split(" (")[0].replace(" ", "_").lower()
                cfg.paths.output_dir = str(ROOT / "logs" / "bench" / stamp / f"{slug}_seed{seed}")
            buckets = [f"test/seq_acc_len{lo}-{hi}" for lo, hi in (cfg.data.length_buckets or [])]
            t0 = time.perf_counter()
            metrics = run(cfg)
            seconds = time.perf_counter() - t0
            rows.setdefault(name, []).append((metrics, seconds))
            shown = " ".join(f"{k.removeprefix('test/')}={metrics.get(k, float('nan')):.4f}"
                             for k in ["test/seq_acc", *buckets])
            print(f"[bench] {name} seed={seed}: {shown} ({seconds:.0f} s)", flush=True)

    keys = ["test/seq_acc", *buckets]
    labels = ["all lengths", *(k.removeprefix("test/seq_acc_len") for k in buckets)]
    print(f"\n{args.experiment}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; seeds "
          f"{' '.join(map(str, args.seeds))}; overrides: {' '.join(args.override) or 'none'}")
    print("test sequence accuracy (%), median [min, max] over seeds, by source length\n")
    lines = []
    for name, results in rows.items():
        cells = []
        for k in keys:
            vals = [100 * m[k] for m, _ in results if k in m]
            cells.append(f"{statistics.median(vals):.1f} [{min(vals):.1f}, {max(vals):.1f}]" if vals else "n/a")
        lines.append([name, *cells, f"{statistics.median(s for _, s in results):.0f}"])
    print("\n".join(markdown_table(["model", *labels, "seconds per run"], lines)))


if __name__ == "__main__":
    main()
