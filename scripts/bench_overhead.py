"""Lightning/lab overhead: one cnn_mnist epoch (train + validation) through `lab.run.run` against a
plain PyTorch loop with the same model, data pipeline (DataModule, augmentation), optimizer,
schedule, batch size and thread count, alternating in one process. Prints times and the ratio.

    python scripts/bench_overhead.py [--rounds 2] [-o data.batch_size=256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import hydra
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from lightning.pytorch import seed_everything
from omegaconf import open_dict

import lab  # noqa: F401
from lab.paths import CONFIG_DIR, ROOT
from lab.run import run
from lab.tables import markdown_table


def compose_cfg(overrides: list[str], out: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=cnn_mnist", "trainer.max_epochs=1", "test=false",
                                           "logger=csv", "callbacks.progress_bar.plain=true", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "logs" / "bench" / "overhead" / out)
    return cfg


def plain_epoch(cfg) -> tuple[float, float]:
    """The same work, written as a plain PyTorch loop. Returns (seconds, val accuracy)."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    opt = model.optimizer_factory(params=model.parameters())
    loader = dm.train_dataloader()
    sched = hydra.utils.instantiate(cfg.model.scheduler)(opt, total_steps=len(loader))
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y, label_smoothing=model.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            correct += (model(x).argmax(-1) == y).sum().item()
            total += len(y)
    return time.perf_counter() - t0, correct / total


def lab_epoch(cfg) -> tuple[float, float]:
    t0 = time.perf_counter()
    metrics = run(cfg)
    return time.perf_counter() - t0, metrics["val/acc"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("-o", "--override", action="append", default=[])
    args = p.parse_args()
    plain, ours = [], []
    for r in range(args.rounds):
        cfg = compose_cfg(args.override, f"round{r}")
        sec, acc = plain_epoch(cfg)
        plain.append(sec)
        print(f"[overhead] round {r}: plain PyTorch {sec:.1f} s (val acc {acc:.4f})", flush=True)
        sec, acc = lab_epoch(cfg)
        ours.append(sec)
        print(f"[overhead] round {r}: lab/Lightning {sec:.1f} s (val acc {acc:.4f})", flush=True)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch size "
          f"{cfg.data.batch_size}, {args.rounds} rounds, one epoch each (train + validation)\n")
    print("\n".join(markdown_table(["loop", "epoch times (s)", "median (s)"], [
        [name, ", ".join(f"{s:.1f}" for s in times), f"{statistics.median(times):.1f}"]
        for name, times in (("plain PyTorch", plain), ("lab (Lightning)", ours))])))
    print(f"\nratio lab / plain (medians): {statistics.median(ours) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
