"""Where a module's tensors are: the walk behind the device tests (tests/unit/lab/test_devices.py, tests/gpu)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

OURS = ("lab.", "agents.", "generative.", "torchmetrics.")  # objects whose attributes the walk follows


def reachable_tensors(obj: object, path: str = "module", seen: set[int] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor reachable from `obj` through attributes and containers of modules and of the lab's own
    objects (buffers, metrics, helpers). Environments are not followed: their observations are NumPy arrays on the
    host by design. torch.Generator objects are not tensors: PPO's minibatch generator stays on the CPU on purpose
    (the same permutations on every device), its indices are moved to the buffer's device."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from reachable_tensors(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (list, tuple, set, deque)):
        for i, v in enumerate(obj):
            yield from reachable_tensors(v, f"{path}[{i}]", seen)
    elif isinstance(obj, nn.Module) or type(obj).__module__.startswith(OURS):
        for k, v in vars(obj).items():
            if k not in ("_trainer", "_fabric"):
                yield from reachable_tensors(v, f"{path}.{k}", seen)


def not_moved(module: nn.Module, device: str = "meta") -> list[str]:
    return [f"{p} ({t.device})" for p, t in reachable_tensors(module) if t.device.type != device]




class DeviceProbe(Callback):
    """Added to a run's callbacks (`+callbacks.device_probe._target_=devices.DeviceProbe`): records, in the
    first training batch and at the end of validation and test, the module's device and every reachable tensor
    that is elsewhere. `DeviceProbe.records` holds what the last probed run saw."""

    records: list[tuple[str, str, list[str]]] = []

    def __init__(self) -> None:
        DeviceProbe.records = []

    def _record(self, where: str, module: LightningModule) -> None:
        DeviceProbe.records.append((where, module.device.type, not_moved(module, module.device.type)))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        if not any(w == "train" for w, _, _ in DeviceProbe.records):  # the first batch
            self._record("train", pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record("validation", pl_module)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record("test", pl_module)
