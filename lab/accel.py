"""Process-wide settings that make small models faster, applied where training starts."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

log = logging.getLogger("lab")


def skip_nvml_recount() -> None:
    """Stop torch from asking NVML for the GPU count on every optimizer step when there is no GPU.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 at import (so that checking for CUDA cannot poison a
    later fork); with it, `torch.cuda.is_available()` opens NVML afresh on every call until CUDA is
    initialized, and Adam/AdamW's `step` calls it each time: 60-250 us per step measured here, more than
    the fused Adam step of a small network. Where no GPU is visible nothing can be poisoned, and torch's
    default check is cached."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def uses_cuda(trainer_cfg: Any) -> bool:
    """Whether a `trainer` node runs on CUDA devices (accelerator gpu / cuda, or auto where CUDA is present)."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def cpu_sync_batchnorm(cfg: DictConfig) -> None:
    """trainer.sync_batchnorm=false where there is no CUDA: torch's SyncBatchNorm is CUDA-only, and CPU (gloo) DDP
    keeps per-process statistics. Done before resume compares configurations."""
    if cfg.trainer.get("sync_batchnorm") and not uses_cuda(cfg.trainer):
        with open_dict(cfg):
            cfg.trainer.sync_batchnorm = False
        log.info("trainer.sync_batchnorm=false: SyncBatchNorm needs CUDA devices")
