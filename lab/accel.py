"""Process-wide settings that make small models faster, applied where training starts."""

from __future__ import annotations

import os

import torch


def skip_nvml_recount() -> None:
    """Stop torch from asking NVML for the GPU count on every optimizer step when there is no GPU.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 at import (so that checking for CUDA cannot poison a
    later fork); with it, `torch.cuda.is_available()` opens NVML afresh on every call until CUDA is
    initialized, and Adam/AdamW's `step` calls it each time: 60-250 us per step measured here, more than
    the fused Adam step of a small network. Where no GPU is visible nothing can be poisoned, and torch's
    default check is cached."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
