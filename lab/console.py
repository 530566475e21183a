"""What a run prints: one console stream without the messages a user cannot act on, the final metrics, and the
closing block of where its outputs are."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from lab.layout import RunLayout, video_files


class _DropMessages(logging.Filter):
    def __init__(self, *parts: str) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(p in record.getMessage() for p in self.parts)


def quiet_console() -> None:
    """One stream, and none of the messages the lab causes and a user cannot act on.

    `import lightning` adds its own console handler that also propagates to the root logger; under Hydra (which
    configures the root) every Lightning message would print twice. Lightning also advertises litlogger on every
    run, says it skips its default summary for ours, and its pytree helper warns about a torch deprecation."""
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for h in list(lightning_logger.handlers):
            if type(h) is logging.StreamHandler:
                lightning_logger.removeHandler(h)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages("litlogger", "Skipping setting a default `ModelSummary`"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def metric_lines(metrics: dict[str, float]) -> list[str]:
    return ["Final metrics:", *(f"  {k}: {metrics[k]:.6g}" for k in sorted(metrics))]


def output_lines(run: RunLayout, best: str | None, wandb_dirs: list[Path]) -> list[str]:
    """The block a run ends with: where its outputs are and the commands that look at them."""
    lines = ["", "Outputs:", f"  run folder:       {run.root}"]
    if best or run.last_checkpoint.is_file():
        lines.append(f"  best checkpoint:  {best or run.last_checkpoint}")
    media = run.media
    images = sorted(media.glob("*.png"), key=lambda p: p.stat().st_mtime) if media.is_dir() else []
    if images:
        lines.append(f"  media folder:     {media}")
    videos = video_files(run.videos)
    if videos:
        lines.append(f"  last video:       {videos[-1]}")
    grids = [p for p in images if p.name.startswith("samples")]
    if grids:
        lines.append(f"  last sample grid: {grids[-1]}")
    elif images:  # e.g. a seq2seq run's attention heat maps
        lines.append(f"  last image:       {images[-1]}")
    for d in wandb_dirs:
        lines.append(f"  W&B run folder:   {d}")
        if d.name.startswith("offline-"):
            lines.append(f"  W&B sync:         wandb sync {d}")
    lines.append(f"  HTML report:      python -m lab.report {run.root}")
    return lines
