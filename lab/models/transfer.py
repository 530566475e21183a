"""Transfer learning for the lab's models: start from the matching tensors of a trained model
(`init_from`), freeze modules (`freeze`), train pretrained parameters at a lower learning rate
(`pretrained_lr_scale`). A model takes these as constructor arguments and calls `Transfer.apply`;
`lab.models.optim.configure` builds the optimizer's parameter groups from it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lab.contracts import ModelHooks
from lab.layout import find_checkpoint

log = logging.getLogger("lab")


def read_state_dict(path: Path, key: str = "model.init_from") -> dict[str, torch.Tensor]:
    """The tensors of a Lightning checkpoint (its state_dict) or of a plain saved state_dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{key}={str(path)!r} cannot be read as a PyTorch file ({type(e).__name__}: {e}).") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{key}={str(path)!r} holds no tensors: pass a Lightning checkpoint (.ckpt) or a file "
                         "saved with torch.save(model.state_dict()).")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _groups(names: Sequence[str], depth: int = 2) -> str:
    """'backbone.features (8), head (2)': tensor names grouped by their first `depth` parts."""
    counts: dict[str, int] = {}
    for n in names:
        prefix = ".".join(n.split(".")[:depth])
        counts[prefix] = counts.get(prefix, 0) + 1
    return ", ".join(f"{p} ({c})" for p, c in counts.items()) or "none"


def _under(name: str, modules: Sequence[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def check_modules(model: nn.Module, names: Sequence[str], key: str) -> None:
    """ValueError naming the first of `names` that is not a (dotted) submodule of `model`."""
    known = dict(model.named_modules())
    for n in names:
        if not isinstance(n, str) or n not in known or n == "":
            top = ", ".join(name for name, _ in model.named_children())
            raise ValueError(f"{key}: {n!r} is not a module of {type(model).__name__}; valid choices: {top} (or a "
                             "dotted path below them, e.g. backbone.features).")


@dataclass
class Transfer:
    """What was loaded and frozen; `param_groups` gives the optimizer its groups."""

    source: Path | None = None
    loaded: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # same name, other shape: left as initialized
    new: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unused: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    frozen: list[str] = field(default_factory=list)
    pretrained_lr_scale: float = 1.0

    @classmethod
    def apply(cls, model: nn.Module, init_from: str | None, init_modules: Sequence[str] | None,
              freeze: Sequence[str] | None, pretrained_lr_scale: float) -> Transfer:
        """Load, freeze and check; ValueErrors name the model.* key at fault. Without init_from nothing is
        loaded (init_modules then has no effect: e.g. transfer_fashion with model.init_from=null)."""
        if isinstance(pretrained_lr_scale, bool) or not isinstance(pretrained_lr_scale, (int, float)) \
                or pretrained_lr_scale < 0:
            raise ValueError(f"model.pretrained_lr_scale={pretrained_lr_scale!r} must be a number >= 0 (1: the same "
                             "learning rate as new parameters; 0 keeps them fixed, like freezing).")
        freeze, init_modules = list(freeze or []), list(init_modules or [])
        check_modules(model, freeze, "model.freeze")
        check_modules(model, init_modules, "model.init_modules")
        t = cls(pretrained_lr_scale=float(pretrained_lr_scale))
        if init_from:
            t.source = find_checkpoint(init_from, "model.init_from")
            t._load(model, read_state_dict(t.source), init_modules)
        for name in freeze:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(False)
        t.frozen = freeze
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"model.freeze={freeze} freezes every parameter: nothing is left to train.")
        return t

    def _load(self, model: nn.Module, source: dict[str, torch.Tensor], modules: list[str]) -> None:
        own = model.state_dict()
        wanted = {k: v for k, v in own.items() if not modules or _under(k, modules)}
        take = {}
        for k, v in wanted.items():
            if k not in source:
                self.new.append(k)
            elif source[k].shape != v.shape:
                self.mismatched.append(f"{k} {tuple(source[k].shape)} -> {tuple(v.shape)}")
            else:
                take[k] = source[k]
        self.unused = [k for k in source if k not in own]
        if not take:
            where = f" under {modules}" if modules else ""
            raise ValueError(
                f"model.init_from={str(self.source)!r}: no tensor{where} matches the model by name and shape "
                f"(the checkpoint has {_groups(list(source))}; the model has {_groups(list(wanted))}"
                f"{'; shapes differ for ' + ', '.join(self.mismatched[:3]) if self.mismatched else ''}). Start from "
                "a checkpoint of the same kind of model (same backbone and sizes).")
        model.load_state_dict(take, strict=False)
        self.loaded = list(take)
        log.info("model.init_from=%s: loaded %d tensors (%s); skipped %d of another shape%s; %d new (%s); %d in the "
                 "checkpoint unused (%s)", self.source, len(self.loaded), _groups(self.loaded), len(self.mismatched),
                 f" ({', '.join(self.mismatched)})" if self.mismatched else "", len(self.new), _groups(self.new),
                 len(self.unused), _groups(self.unused))

    def is_frozen(self, name: str) -> bool:
        return _under(name, self.frozen)

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Trainable parameters: new ones at the optimizer's lr; loaded ones with `lr_scale` (read by
        lab.models.optim.configure). Frozen parameters are left out."""
        loaded = set(self.loaded)
        new, pretrained = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (pretrained if name in loaded and self.pretrained_lr_scale != 1.0 else new).append(p)
        groups = [{"params": new}] if new else []
        if pretrained:
            groups.append({"params": pretrained, "lr_scale": self.pretrained_lr_scale})
        return groups

    def frozen_modules(self, model: nn.Module) -> Iterator[nn.Module]:
        for name in self.frozen:
            yield model.get_submodule(name)


class Transferable(ModelHooks):
    """Mixin for a LightningModule: `init_transfer(...)` at the end of __init__; frozen modules stay in eval
    mode (batch-norm statistics and dropout fixed, as in a linear probe) whenever the model trains."""

    transfer: Transfer | None = None

    def init_transfer(self, init_from: str | None, init_modules: Sequence[str] | None, freeze: Sequence[str] | None,
                      pretrained_lr_scale: float) -> None:
        self.transfer = Transfer.apply(self, init_from, init_modules, freeze, pretrained_lr_scale)
        if self.transfer.frozen:  # Lightning warns of modules in eval mode at fit start: these are on purpose
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")

    def optimizer_param_groups(self) -> list[dict] | None:
        """The transfer's groups: frozen modules left out, pretrained ones at `lr_scale` of the rate."""
        return None if self.transfer is None else self.transfer.param_groups(self)

    def train(self, mode: bool = True):  # noqa: ANN201 (nn.Module.train's signature)
        super().train(mode)
        if self.transfer is not None:
            for m in self.transfer.frozen_modules(self):
                m.eval()
        return self
