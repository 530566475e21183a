"""Pruning (`mode=prune`): global magnitude pruning of every conv / linear / recurrent / attention weight at once
(torch.nn.utils.prune), and channel pruning of feed-forward nets (torch-pruning)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)


def check_prune_settings(sparsities: Iterable[Any], channel_ratios: Iterable[Any], finetune_epochs: Any) -> None:
    """ValueError naming the first of mode=prune's compress.* values out of range."""
    for key, values in (("compress.sparsities", sparsities), ("compress.channel_ratios", channel_ratios)):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"{key}={list(values)}: {v!r} is outside [0, 1) (the fraction of weights or "
                                 "channels removed; 0.9 keeps a tenth).")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"compress.finetune_epochs={finetune_epochs!r} must be an integer >= 0.")


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of every conv / linear weight, recurrent weight matrix and attention input
    projection."""
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            out.append((m, "weight"))
        elif isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim:  # one (3d, d) matrix for q, k, v
            out.append((m, "in_proj_weight"))
        elif isinstance(m, RECURRENT):  # weight_ih_l0, ...; while masked, the parameter is weight_ih_l0_orig
            names = dict.fromkeys(n.removesuffix("_orig") for n, _ in m.named_parameters(recurse=False)
                                  if n.startswith("weight_"))
            out += [(m, n) for n in names]
    return out


def global_magnitude(model: nn.Module, sparsity: float) -> None:
    """Mask the `sparsity` fraction of smallest-magnitude weights over all prunable tensors at once; the
    masks stay (and are re-applied every forward) until `make_permanent`."""
    if sparsity > 0:
        prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=sparsity)
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention) and prune.is_pruned(m.out_proj):
                m.register_forward_pre_hook(_mask_out_proj)


def _mask_out_proj(attention: nn.MultiheadAttention, args: tuple) -> None:
    """MultiheadAttention reads out_proj.weight without calling out_proj, so out_proj's own pruning hook (which
    recomputes weight = weight_orig * mask for each forward) never runs: run it from the attention's forward."""
    for hook in attention.out_proj._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            hook(attention.out_proj, args)


def make_permanent(model: nn.Module) -> None:
    for m, name in prunable(model):
        if prune.is_pruned(m) and hasattr(m, f"{name}_mask"):
            prune.remove(m, name)
    for m in model.modules():
        for key, hook in list(m._forward_pre_hooks.items()):
            if hook is _mask_out_proj:
                del m._forward_pre_hooks[key]
    for m in model.modules():  # recurrent modules cache their weights: rebuild after the masks are gone
        if isinstance(m, RECURRENT):
            m._flat_weights = [getattr(m, n) if hasattr(m, n) else None for n in m._flat_weights_names]


def weight_sparsity(model: nn.Module) -> float:
    weights = [getattr(m, n) for m, n in prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, total)


def channel_skip(model: nn.Module) -> str | None:
    """Why channel pruning does not apply to `model` (None when it does): torch-pruning removes channels and
    hidden units of conv and linear layers; recurrent and attention layers tie their widths across gates and
    heads in ways it does not rewrite here."""
    for kinds, what in ((RECURRENT, "recurrent"), ((nn.MultiheadAttention,), "attention")):
        found = sorted({type(m).__name__ for m in model.modules() if isinstance(m, kinds)})
        if found:
            return (f"the model has {what} layers ({', '.join(found)}), whose hidden units torch-pruning does not "
                    "remove; compress.channel_ratios applies to MLP and conv backbones")
    return None


def channel_prune(model: nn.Module, ratio: float, example: torch.Tensor, keep: list[nn.Module]) -> None:
    """Remove `ratio` of the channels / hidden units of every prunable layer but `keep` (e.g. the heads,
    whose outputs are the classes), by L1 norm, in place, with torch-pruning's dependency graph."""
    import torch_pruning as tp

    if ratio <= 0:
        return
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=ratio, ignored_layers=keep)
    pruner.step()
