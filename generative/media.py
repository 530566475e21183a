"""Image grids: saved as PNG in the run folder and logged to W&B / TensorBoard."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torchvision.utils import make_grid, save_image

from lab.layout import RunLayout
from lab.loggers import log_image_array


def log_grid(module: LightningModule, images01: torch.Tensor, name: str, nrow: int = 10, scale: int = 2
             ) -> Path | None:
    """Save `images01` (N, C, H, W) in [0, 1] as media/<name>_epoch<NNN>.png, `nrow` images a row, each pixel
    `scale` x `scale` (28-pixel digits are too small to judge at 1x), and log it as `val/<name>`."""
    if not module.trainer.is_global_zero:
        return None
    grid = make_grid(images01.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)  # (3, H', W')
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # (3, scale H', scale W'), nearest
    path = RunLayout(Path(module.trainer.default_root_dir)).media / f"{name}_epoch{module.current_epoch:03d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    image = grid.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()  # (H', W', 3)
    log_image_array(module.loggers, f"val/{name}", image, module.global_step)
    return path
