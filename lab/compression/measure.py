"""How every variant is measured (`measure`: test accuracy, parameters, file size, CPU latency at batch 1 and 256)
and the table and plot the rows go to."""

from __future__ import annotations

import gzip
import io
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab.layout import RunLayout
from lab.tables import markdown_table, write_dataclass_csv

log = logging.getLogger("lab")



@dataclass
class Row:
    variant: str
    acc: float
    params: int
    kib: float
    gzip_kib: float
    latency_1_ms: float
    latency_256_ms: float
    agreement: float | None = None  # share of test predictions equal to the fp32 model's


def file_kib(obj: Any) -> tuple[float, float]:
    """(KiB, gzip KiB) of torch.save(obj)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    raw = buf.getvalue()
    return len(raw) / 1024, len(gzip.compress(raw, compresslevel=6)) / 1024


@torch.no_grad()
def predictions(predict: Callable[[torch.Tensor], torch.Tensor], batches: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    preds, targets = [], []
    for x, y in batches:
        preds.append(predict(x).argmax(-1))
        targets.append(y)
    return torch.cat(preds), torch.cat(targets)


@torch.no_grad()
def latency_ms(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int) -> float:
    for _ in range(3):  # warm-up (and compilation for this shape)
        predict(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(variant: str, predict: Callable[[torch.Tensor], torch.Tensor], batches: list, params: int,
            sizes: tuple[float, float], repeats: int, reference: torch.Tensor | None) -> tuple[Row, torch.Tensor]:
    preds, targets = predictions(predict, batches)
    x = torch.cat([b[0] for b in batches])
    row = Row(variant, float((preds == targets).float().mean()), params, round(sizes[0], 1), round(sizes[1], 1),
              latency_ms(predict, x[:1], repeats), latency_ms(predict, x[:256], max(3, repeats // 4)),
              None if reference is None else float((preds == reference).float().mean()))
    log.info("compress: %s acc=%.4f params=%d %.1f KiB latency %.3f ms (1) %.2f ms (256)", variant, row.acc, params,
             row.kib, row.latency_1_ms, row.latency_256_ms)
    return row, preds


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    if not nonzero:
        return sum(p.numel() for p in model.parameters())
    return sum(int((p != 0).sum()) for p in model.parameters())


def write_table(rows: list[Row], out: Path) -> None:
    """compression.csv, compression.md and media/accuracy_vs_size.png in the run folder `out`."""
    layout = RunLayout(out)
    write_dataclass_csv(layout.compression_table, rows)
    layout.compression_table.with_suffix(".md").write_text(markdown(rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r.gzip_kib, 100 * r.acc)
        ax.annotate(r.variant, (r.gzip_kib, 100 * r.acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("file size, gzip (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    layout.compression_plot.parent.mkdir(exist_ok=True)
    fig.savefig(layout.compression_plot, dpi=110)
    plt.close(fig)


def markdown(rows: list[Row]) -> str:
    table = markdown_table(
        ["variant", "test acc", "params", "KiB", "gzip KiB", "batch-1 ms", "batch-256 ms", "agreement"],
        ([r.variant, f"{100 * r.acc:.2f} %", f"{r.params:,}", f"{r.kib:.1f}", f"{r.gzip_kib:.1f}",
          f"{r.latency_1_ms:.3f}", f"{r.latency_256_ms:.2f}", "" if r.agreement is None else f"{100 * r.agreement:.2f} %"]
         for r in rows))
    return "\n".join(table) + "\n"
