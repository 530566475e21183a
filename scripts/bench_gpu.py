"""GPU benchmark: one table of training speed on the GPU, with the CPU figure beside it (same machine).

    python scripts/bench_gpu.py                      # GPU column (CUDA needed), precision 32-true
    python scripts/bench_gpu.py --precision bf16-mixed
    python scripts/bench_gpu.py --with-cpu           # adds the CPU column (partial epochs, extrapolated)
    python scripts/bench_gpu.py --loaders            # data loader settings (workers x pinned memory) for cnn_mnist
    python scripts/bench_gpu.py --devices cpu        # the CPU column only (no GPU needed)

Rows: `cnn_mnist` seconds of training until the test accuracy first reaches 99 % (the test set is scored after
every epoch, outside the clock) and seconds per epoch; `resnet_fashion` and `gan_mnist` seconds per epoch;
`ppo_breakout` and `dqn_pong` env steps per second of training. Each run is `python -m lab experiment=<e>` with
`trainer.accelerator=<device>`, CSV logging, and this file's `EpochClock` callback (scripts/ on PYTHONPATH).
CPU epochs are timed over `--cpu-batches` batches and scaled to the whole epoch (marked "est."). Needs MNIST and
Fashion-MNIST under data/ (`python -m lab.data fetch all`) and ale-py's ROMs. Printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[1]


class EpochClock(Callback):
    """Writes <run>/epoch_clock.json: each epoch's training seconds (validation excluded), and with
    `test_each_epoch`, the test accuracy after each epoch (scored outside the clock)."""

    def __init__(self, test_each_epoch: bool = False) -> None:
        self.test_each_epoch = test_each_epoch
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0

    def _sync(self, module: LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._t0:
            return
        self._sync(pl_module)
        row = {"epoch": trainer.current_epoch, "seconds": time.perf_counter() - self._t0,
               "batches": trainer.num_training_batches}
        if self.test_each_epoch:
            row["test_acc"] = self._test_accuracy(trainer, pl_module)
        self.rows.append(row)
        self._t0 = 0.0
        if trainer.is_global_zero:
            Path(trainer.default_root_dir, "epoch_clock.json").write_text(json.dumps(self.rows))

    @torch.no_grad()
    def _test_accuracy(self, trainer: Trainer, module: LightningModule) -> float:
        dm = trainer.datamodule
        if dm.test_set is None:
            dm.setup("test")
        was_training = module.training
        module.eval()
        correct = total = 0
        for x, y in dm.test_dataloader():
            pred = module(x.to(module.device)).argmax(-1).cpu()
            correct, total = correct + int((pred == y).sum()), total + len(y)
        module.train(was_training)
        return correct / total


def lab(experiment: str, device: str, precision: str, overrides: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "lab", f"experiment={experiment}", f"trainer.accelerator={device}",
           "trainer.devices=1", f"trainer.precision={precision}", "logger=csv", "callbacks.progress_bar.plain=true",
           f"hydra.run.dir={run_dir}", *overrides]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), str(ROOT)]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = {"wall": time.perf_counter() - t0, "metrics": json.loads((run_dir / "result.json").read_text())["metrics"]}
    clock = run_dir / "epoch_clock.json"
    out["epochs"] = json.loads(clock.read_text()) if clock.is_file() else []
    return out


CLOCK = "+callbacks.epoch_clock._target_=bench_gpu.EpochClock"


def per_epoch(rows: list[dict], full_batches: int | None = None) -> float:
    """Median epoch seconds (the first epoch is left out when there are more: it pays for warm-up)."""
    rows = rows[1:] if len(rows) > 1 else rows
    seconds = statistics.median(r["seconds"] for r in rows)
    if full_batches:
        seconds *= full_batches / rows[0]["batches"]
    return seconds


def measure(device: str, precision: str, args: argparse.Namespace, run_root: Path) -> dict[str, str]:
    cpu = device == "cpu"
    short = [f"trainer.limit_train_batches={args.cpu_batches}", "trainer.limit_val_batches=2",
             "trainer.max_epochs=2", "test=false"] if cpu else []
    est = " (est.)" if cpu else ""
    cells: dict[str, str] = {}

    # cnn_mnist: to 99 % test accuracy (GPU, or --cpu-full) and per epoch
    if not cpu or args.cpu_full:
        r = lab("cnn_mnist", device, precision, [CLOCK, "+callbacks.epoch_clock.test_each_epoch=true"],
                run_root / f"cnn_{device}")
        elapsed, reached = 0.0, None
        for row in r["epochs"]:
            elapsed += row["seconds"]
            if reached is None and row["test_acc"] >= 0.99:
                reached = (elapsed, row["epoch"] + 1)
        cells["cnn_mnist s to 99 % test acc"] = (f"{reached[0]:.1f} (epoch {reached[1]})" if reached else
                                                  f"not reached ({max(x['test_acc'] for x in r['epochs']):.4f})")
        cells["cnn_mnist s / epoch"] = f"{per_epoch(r['epochs']):.2f}"
    else:
        r = lab("cnn_mnist", device, precision, [CLOCK, *short], run_root / f"cnn_{device}")
        cells["cnn_mnist s to 99 % test acc"] = "--cpu-full"
        cells["cnn_mnist s / epoch"] = f"{per_epoch(r['epochs'], 430):.1f}{est}"  # 55,000 / 128 batches
    for exp, batches, key in (("resnet_fashion", 430, "resnet_fashion s / epoch"),
                              ("gan_mnist", 430, "gan_mnist s / epoch")):
        r = lab(exp, device, precision, [CLOCK, *(short or ["trainer.max_epochs=3", "test=false"])],
                run_root / f"{exp}_{device}")
        cells[key] = f"{per_epoch(r['epochs'], batches if cpu else None):.2f}{est}"
    for exp in ("ppo_breakout", "dqn_pong"):
        steps = args.rl_steps if not cpu else args.rl_steps // 2
        r = lab(exp, device, precision, [f"agent.total_timesteps={steps}", f"agent.eval_freq={steps}",
                                         "agent.eval_episodes=1", "agent.video=false", "env.max_episode_steps=2000",
                                         *(["agent.learning_starts=1000"] if exp.startswith("dqn") else [])],
                run_root / f"{exp}_{device}")
        cells[f"{exp} env steps / s"] = f"{r['metrics']['time/sps']:.0f}"
    return cells


def loaders(device: str, run_root: Path) -> None:
    """cnn_mnist seconds per epoch for data.num_workers x data.pin_memory (2 epochs, the second timed)."""
    print(f"\ncnn_mnist on {device}: data loader settings (seconds per epoch, second of two)\n"
          "| num_workers | pin_memory | s / epoch |\n|---|---|---|", flush=True)
    limit = ["trainer.limit_train_batches=150"] if device == "cpu" else []
    for workers in (0, 2, 4):
        for pin in ((False, True) if device != "cpu" else (False,)):
            r = lab("cnn_mnist", device, "32-true", [CLOCK, "trainer.max_epochs=2", "test=false",
                                                      "trainer.limit_val_batches=2", f"data.num_workers={workers}",
                                                      f"data.pin_memory={str(pin).lower()}", *limit],
                    run_root / f"loaders_{device}_{workers}_{pin}")
            print(f"| {workers} | {pin} | {per_epoch(r['epochs'], 430 if limit else None):.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=None, help="gpu and/or cpu (default: gpu, plus cpu with --with-cpu)")
    p.add_argument("--with-cpu", action="store_true")
    p.add_argument("--cpu-full", action="store_true", help="CPU: whole cnn_mnist run to 99 %% (slow)")
    p.add_argument("--cpu-batches", type=int, default=60)
    p.add_argument("--precision", default="32-true")
    p.add_argument("--rl-steps", type=int, default=20_000)
    p.add_argument("--loaders", action="store_true", help="only the data loader table")
    args = p.parse_args()
    devices = args.devices or (["gpu", "cpu"] if args.with_cpu else ["gpu"])
    if "gpu" in devices and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --devices cpu")
    run_root = ROOT / "logs" / "bench_gpu" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"
    if args.loaders:
        for d in devices:
            loaders(d, run_root)
        return
    names = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
             "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    columns = {}
    for d in devices:
        precision = args.precision if d == "gpu" else "32-true"  # 16-mixed is CUDA-only; CPU runs as users run it
        columns[d] = measure(d, precision, args, run_root)
        print(f"{d} done: {columns[d]}", flush=True)
    print(f"\nPyTorch {torch.__version__}; " + "; ".join(
        f"{d}: {names[d]}, precision {args.precision if d == 'gpu' else '32-true'}" for d in devices))
    print("| figure | " + " | ".join(f"{d} ({names[d]})" for d in devices) + " |")
    print("|---|" + "---|" * len(devices))
    for key in next(iter(columns.values())):
        print(f"| {key} | " + " | ".join(columns[d].get(key, "") for d in devices) + " |")


if __name__ == "__main__":
    main()
