"""fp32 vs pruned vs int8 vs ONNX for trained classifiers, in one table and one accuracy-vs-size plot.

    python scripts/bench_compress.py                          # cnn_mnist, mlp_mnist, lstm_seqmnist
    python scripts/bench_compress.py cnn_mnist --train        # train first (otherwise: the newest run's checkpoint)
    python scripts/bench_compress.py mlp_mnist -o trainer.limit_test_batches=10   # an override for both modes

For each experiment it takes the best checkpoint of its newest run under logs/<experiment>/ (or, with --train
or when there is none, trains one with the experiment's defaults), then runs `mode=prune` and `mode=export` through lab.run.run (the
same path as `python -m lab`), on the full official test set. Latencies are this machine's CPU, with torch's
default threads. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import os
from datetime import datetime
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import lab  # noqa: F401
from lab.compression.measure import Row, markdown
from lab.layout import find_checkpoint, runs_under
from lab.paths import CONFIG_DIR, ROOT
from lab.run import run


def config(overrides: list[str], out: Path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def read_rows(folder: Path, experiment: str, skip_fp32: bool) -> list[Row]:
    with (folder / "compression.csv").open() as f:
        rows = []
        for r in csv.DictReader(f):
            if skip_fp32 and r["variant"] == "fp32":
                continue
            rows.append(Row(f"{experiment}: {r['variant']}", float(r["acc"]), int(r["params"]), float(r["kib"]),
                            float(r["gzip_kib"]), float(r["latency_1_ms"]), float(r["latency_256_ms"]),
                            float(r["agreement"]) if r["agreement"] else None))
    return rows


def plot(rows_by_exp: dict[str, list[Row]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for exp, rows in rows_by_exp.items():
        ax.plot([r.gzip_kib for r in rows], [100 * r.acc for r in rows], "o", label=exp)
        for r in rows:
            ax.annotate(r.variant.split(": ", 1)[1], (r.gzip_kib, 100 * r.acc), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("file size, gzip (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="*", default=["cnn_mnist", "mlp_mnist", "lstm_seqmnist"])
    p.add_argument("--train", action="store_true", help="train each experiment first (its defaults, seed 42), even when logs/<experiment> has runs")
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = p.parse_args()
    base = ROOT / "logs" / "bench" / f"compress_{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    common = ["logger=csv", "callbacks.progress_bar.plain=true"]
    by_exp: dict[str, list[Row]] = {}
    for exp in args.experiments:
        if args.train or not runs_under(ROOT / "logs" / exp):
            cfg = config([f"experiment={exp}", *common], base / exp / "train")
            run(cfg)
            ckpt = find_checkpoint(base / exp / "train", "checkpoint")
        else:
            ckpt = find_checkpoint(ROOT / "logs" / exp, "checkpoint")
        print(f"[bench] {exp}: {ckpt}", flush=True)
        by_exp[exp] = []
        for mode in ("prune", "export"):
            out = base / exp / mode
            run(config([f"experiment={exp}", f"mode={mode}", f"ckpt_path={ckpt}", *common, *args.override], out))
            by_exp[exp] += read_rows(out, exp, skip_fp32=mode == "export")
    rows = [r for rs in by_exp.values() for r in rs]
    plot(by_exp, base / "accuracy_vs_size.png")
    (base / "compression.md").write_text(markdown(rows))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, CPU latencies; folder {base}\n")
    print(markdown(rows))
    print(f"plot: {base / 'accuracy_vs_size.png'}")


if __name__ == "__main__":
    main()
