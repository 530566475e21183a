"""Train experiments with their default configs over seeds and print a results table.

    python scripts/bench.py cnn_mnist --seeds 0 1 2
    python scripts/bench.py vae_mnist gan_mnist --seeds 0
    python scripts/bench.py mlp_mnist --seeds 0 -o trainer.max_epochs=3 --metrics test/acc

Each run goes through lab.run.run (the same path as `python -m lab`), logs to CSV under
logs/bench/<date>/, and is tested on the full official test set (VAEs: the IWAE estimate on as many
test images as model.iw_examples says). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import math
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

DEFAULT_METRICS = {
    "classifier": ["test/acc", "test/f1"],
    "gan": ["test/fid", "test/fid_floor", "test/classes_covered", "test/kl_uniform", "test/confidence"],
    "vae": ["test/nelbo", "test/nll_iw", "test/fid", "test/fid_floor", "test/classes_covered", "test/kl_uniform"],
}
PERCENT = {"test/acc", "test/f1", "test/confidence"}


def family(target: str) -> str:
    return "gan" if target.endswith(".GAN") else "vae" if target.endswith(".VAE") else "classifier"


def fmt(key: str, values: list[float]) -> str:
    scale = 100.0 if key in PERCENT or key.endswith("/acc") else 1.0  # also per-task test/<task>/acc
    vals = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.2f}" if key != "test/kl_uniform" else f"{vals[0]:.4f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    p.add_argument("--metrics", nargs="+", help="metric keys to show (default: by model family)")
    args = p.parse_args()
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"  # parallel benchmarks never share a folder
    results: dict[str, list[tuple[int, int, dict[str, float], float]]] = {}
    keys: dict[str, list[str]] = {}
    for exp in args.experiments:
        for seed in args.seeds:
            overrides = [f"experiment={exp}", f"seed={seed}", "logger=csv", "callbacks.progress_bar.plain=true",
                         *args.override]
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
            with open_dict(cfg):
                cfg.paths.output_dir = str(ROOT / "logs" / "bench" / stamp / f"{exp}_seed{seed}")
            keys[exp] = args.metrics or DEFAULT_METRICS[family(cfg.model._target_)]
            t0 = time.perf_counter()
            metrics = run(cfg)
            seconds = time.perf_counter() - t0
            results.setdefault(exp, []).append((seed, cfg.trainer.max_epochs, metrics, seconds))
            shown = " ".join(f"{k}={metrics.get(k, float('nan')):.4g}" for k in keys[exp])
            print(f"[bench] {exp} seed={seed}: {shown} ({seconds:.0f} s)", flush=True)

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; "
          f"overrides: {' '.join(args.override) or 'none'}; percentages for acc/f1/confidence")
    for exp, rows in results.items():
        lines = [["", seed, epochs, *(fmt(k, [metrics.get(k)]) for k in keys[exp]), f"{sec:.0f}"]
                 for seed, epochs, metrics, sec in rows]
        if len(rows) > 1:
            lines.append(["", f"**mean ± sd ({len(rows)} seeds)**", "",
                          *(fmt(k, [r[2].get(k) for r in rows]) for k in keys[exp]),
                          f"{statistics.mean(r[3] for r in rows):.0f}"])
        print("\n" + "\n".join(markdown_table([exp, "seed", "epochs", *keys[exp], "wall-clock (s)"], lines)))


if __name__ == "__main__":
    main()
