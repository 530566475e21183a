"""Smaller and faster classifiers: pruning (`mode=prune`), int8 quantization and ONNX export (`mode=export`).

Every variant is measured the same way (`measure`): test accuracy, parameters (non-zero ones for masked
pruning), file size, and CPU latency at batch 1 and batch 256 (median over `latency_repeats`). The rows go
to <run>/compression.csv and compression.md and the plot media/accuracy_vs_size.png (in the HTML report).

- Global magnitude pruning (torch.nn.utils.prune, L1 over all conv / linear / recurrent weights at once),
  each sparsity followed by `finetune_epochs` of training with the masks held, then made permanent. The
  tensors stay dense: the file shrinks only compressed (the `gzip KiB` column) and latency does not change.
- Channel pruning (torch-pruning's dependency graph, L1 importance) removes whole conv channels and hidden
  units, the heads' outputs kept: the model really is smaller and faster. It applies to feed-forward nets (MLP,
  CNN, LeNet, ResNet); recurrent and attention layers are skipped with the reason logged (`channel_skip`).
- int8 through PyTorch's current path, torchao: `static` (PT2E export, X86 inductor quantizer, calibrated on
  training batches, then torch.compile) for conv nets; `dynamic` (int8 weights and per-batch activation
  scales on linear layers, attention projections excepted, then torch.compile) otherwise. torchao does not
  quantize nn.LSTM / nn.GRU: recurrent models use torch.ao's dynamic quantization, the only int8 path PyTorch
  has for them (it has none for a plain nn.RNN, whose weights stay fp32, with a log line).
- ONNX (torch.onnx, dynamic batch) run by onnxruntime on the whole test set; the agreement rate of its
  predictions with PyTorch's is reported.
"""

from __future__ import annotations

import copy
import gzip
import io
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from lab.layout import RunLayout
from lab.tables import markdown_table, write_dataclass_csv

log = logging.getLogger("lab")

QUANTIZATIONS = ("auto", "static", "dynamic", "none")
RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
# torch.ao's dynamic quantization has int8 kernels for these; a plain nn.RNN stays fp32 under it
DYNAMIC_INT8 = {nn.LSTM, nn.GRU, nn.Linear}


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


def check_prune_settings(sparsities: Iterable[Any], channel_ratios: Iterable[Any], finetune_epochs: Any) -> None:
    """ValueError naming the first of mode=prune's compress.* values out of range."""
    for key, values in (("compress.sparsities", sparsities), ("compress.channel_ratios", channel_ratios)):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"{key}={list(values)}: {v!r} is outside [0, 1) (the fraction of weights or "
                                 "channels removed; 0.9 keeps a tenth).")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"compress.finetune_epochs={finetune_epochs!r} must be an integer >= 0.")


def check_export_settings(quantization: Any) -> None:
    """ValueError naming mode=export's compress.quantization unless it is one of QUANTIZATIONS."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"compress.quantization={quantization!r} is not valid; valid choices: "
                         f"{', '.join(QUANTIZATIONS)}.")


# ---- pruning -------------------------------------------------------------------------------------------------
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


# ---- quantization and export ---------------------------------------------------------------------------------
def resolve_quantization(model: nn.Module, choice: str) -> str:
    """auto: static for models with convolutions, dynamic otherwise; recurrent models: always dynamic."""
    if any(isinstance(m, RECURRENT) for m in model.modules()):
        return "dynamic" if choice != "none" else "none"
    if choice != "auto":
        return choice
    return "static" if any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in model.modules()) else "dynamic"


def quantize(model: nn.Module, method: str, calibration: list[torch.Tensor]) -> nn.Module:
    """An int8 copy of `model` (eval mode, CPU) by `method` (static | dynamic); torch.compile'd where torchao
    made it (its int8 kernels come from inductor)."""
    model = copy.deepcopy(model).eval().cpu()
    # torchao's int8 tensors are not hashed for AOT autograd's cache: compiling works, uncached (said at first call)
    warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices: the recurrent path has no successor yet
        if any(isinstance(m, RECURRENT) for m in model.modules()):
            from torch.ao.quantization import quantize_dynamic

            plain = sorted({type(m).__name__ for m in model.modules() if isinstance(m, RECURRENT)} -
                           {t.__name__ for t in DYNAMIC_INT8})
            if plain:
                log.info("compress: int8 dynamic: %s stays fp32: torch.ao's dynamic quantization has no int8 "
                         "version of it (the linear layers are quantized)", ", ".join(plain))
            return quantize_dynamic(model, DYNAMIC_INT8, dtype=torch.qint8)
        if method == "dynamic":
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
                log.info("compress: int8 dynamic: the attention projections (MultiheadAttention's in_proj_weight "
                         "and out_proj) stay fp32: torchao quantizes nn.Linear modules, and attention reads its "
                         "weights directly")

            quantize_(model, Int8DynamicActivationInt8WeightConfig())
            return torch.compile(model)
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        # strict (Dynamo) export names each call of a module apart: non-strict export gives a module called twice
        # (torchvision's BasicBlock reuses its ReLU) one partition with two outputs, which the quantizer refuses
        exported = torch.export.export(model, (calibration[0],), dynamic_shapes=({0: batch},), strict=True).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for x in calibration:
                prepared(x)
        return torch.compile(drop_unused(convert_pt2e(prepared)))


def drop_unused(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the parameters and buffers the graph no longer reads (after conversion, the fp32 originals of
    the weights it now holds in int8), so that what is saved is what runs."""
    used = {n.target for n in graph_module.graph.nodes if n.op == "get_attr"}
    for name in [n for n, _ in (*graph_module.named_parameters(), *graph_module.named_buffers()) if n not in used]:
        parent, _, leaf = name.rpartition(".")
        owner = graph_module.get_submodule(parent) if parent else graph_module
        delattr(owner, leaf)
    return graph_module


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The model as ONNX with a dynamic batch dimension."""
    model = copy.deepcopy(model).eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    return path


def onnx_predictor(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


# ---- measuring -----------------------------------------------------------------------------------------------
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


# ---- the two modes -------------------------------------------------------------------------------------------
def finetune(model: nn.Module, datamodule: Any, cfg: Any, epochs: int) -> None:
    """`epochs` of training with the model's own optimizer and schedule (pruning masks held), no checkpoints."""
    if epochs == 0:
        return
    from lightning.pytorch import Trainer

    from lab.callbacks import EpochLines

    t = cfg.trainer
    trainer = Trainer(max_epochs=epochs, accelerator=t.get("accelerator", "auto"), devices=1, logger=False,
                      enable_checkpointing=False, enable_model_summary=False, callbacks=[EpochLines()],
                      limit_train_batches=t.get("limit_train_batches"), limit_val_batches=0, num_sanity_val_steps=0,
                      gradient_clip_val=t.get("gradient_clip_val"), precision=t.get("precision", "32-true"))
    model.train()
    trainer.fit(model, datamodule=datamodule)
    model.cpu().eval()


def _slug(variant: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in variant).strip("_").replace("__", "_")


@dataclass
class Bench:
    """What every variant is measured against: the test batches, the fp32 model's predictions, the settings."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    reference: torch.Tensor  # the fp32 model's test predictions (the agreement column)
    repeats: int  # compress.latency_repeats
    files: Path  # where the variants are saved

    def row(self, variant: str, predict: Callable[[torch.Tensor], torch.Tensor], params: int,
            sizes: tuple[float, float]) -> Row:
        return measure(variant, predict, self.batches, params, sizes, self.repeats, self.reference)[0]


def measured_batches(datamodule: Any, cfg: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The test batches every variant is measured on (an integer trainer.limit_test_batches of them, else all);
    the training split is set up too (fine-tuning and calibration read it)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    limit = cfg.trainer.get("limit_test_batches")
    batches = list(datamodule.test_dataloader())
    return batches[:limit] if isinstance(limit, int) and not isinstance(limit, bool) else batches


def pruned_variants(model: nn.Module, datamodule: Any, cfg: Any, bench: Bench) -> list[Row]:
    """mode=prune: global magnitude pruning at each of compress.sparsities, then channel pruning at each of
    compress.channel_ratios (feed-forward models only), each fine-tuned and saved."""
    c, rows = cfg.compress, []
    for s in c.sparsities:
        m = copy.deepcopy(model)
        global_magnitude(m, float(s))
        finetune(m, datamodule, cfg, int(c.finetune_epochs))
        make_permanent(m)
        name = f"magnitude {100 * s:g}%"
        torch.save(m.state_dict(), bench.files / f"{_slug(name)}.pt")  # loads into the same configured model
        rows.append(bench.row(name, m, count_params(m, nonzero=True), file_kib(m.state_dict())))
        log.info("compress: %s: weight sparsity %.3f", name, weight_sparsity(m))
    skip = channel_skip(model)
    if c.channel_ratios and skip:
        log.info("compress: channel pruning skipped: %s", skip)
    for r in c.channel_ratios if not skip else []:
        m = copy.deepcopy(model)
        channel_prune(m, float(r), bench.batches[0][0][:1], keep=[m.head])
        finetune(m, datamodule, cfg, int(c.finetune_epochs))
        name = f"channels -{100 * r:g}%"
        torch.save(m, bench.files / f"{_slug(name)}.pt")  # a smaller network: the whole module (torch.load it)
        rows.append(bench.row(name, m, count_params(m), file_kib(m.state_dict())))
    return rows


def calibration_batches(datamodule: Any, n: int) -> list[torch.Tensor]:
    """The inputs of the first n training batches (static quantization's calibration)."""
    calibration = []
    for x, _ in datamodule.train_dataloader():
        calibration.append(x)
        if len(calibration) >= n:
            break
    return calibration


def exported_variants(model: nn.Module, datamodule: Any, cfg: Any, bench: Bench) -> list[Row]:
    """mode=export: the int8 model (compress.quantization) and the ONNX export run by onnxruntime (compress.onnx)."""
    c, rows = cfg.compress, []
    method = resolve_quantization(model, c.quantization)
    if method != "none":
        t0 = time.perf_counter()
        q = quantize(model, method, calibration_batches(datamodule, int(c.calibration_batches)))
        rows.append(bench.row(f"int8 {method}", q, count_params(model), file_kib(q.state_dict())))
        log.info("compress: int8 %s: quantized and compiled (with the first batches) in %.1f s", method,
                 time.perf_counter() - t0)
    if c.onnx:
        path = export_onnx(model, bench.batches[0][0][:1], bench.files / "model.onnx")
        raw = path.read_bytes()
        sizes = (len(raw) / 1024, len(gzip.compress(raw, compresslevel=6)) / 1024)
        rows.append(bench.row("onnx (onnxruntime)", onnx_predictor(path), count_params(model), sizes))
    return rows


def compress_metrics(rows: list[Row]) -> dict[str, float]:
    """compress/<variant>/<figure> of every row (the agreement only where there is one)."""
    return {f"compress/{_slug(r.variant)}/{k}": float(v) for r in rows for k, v in asdict(r).items()
            if k != "variant" and v is not None}


Variants = Callable[[nn.Module, Any, Any, "Bench"], list[Row]]


def compress_classifier(model: nn.Module, datamodule: Any, cfg: Any, out: Path, variants: Variants,
                        files: Path) -> dict[str, float]:
    """The fp32 model, then what `variants` makes of it (pruned_variants, exported_variants), each measured on the
    same test batches. Returns compress/<variant>/<figure> metrics; writes the table and the plot into the run
    folder `out` and the variants' files into `files`."""
    batches = measured_batches(datamodule, cfg)
    model = model.cpu().eval()
    repeats = int(cfg.compress.latency_repeats)
    base, reference = measure("fp32", model, batches, count_params(model), file_kib(model.state_dict()), repeats, None)
    bench = Bench(batches, reference, repeats, files)
    bench.files.mkdir(parents=True, exist_ok=True)
    rows = [base, *variants(model, datamodule, cfg, bench)]
    write_table(rows, out)
    print(markdown(rows))
    return compress_metrics(rows)
