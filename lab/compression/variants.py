"""The two modes' work: smaller and faster classifiers: pruning (`mode=prune`), int8 quantization and ONNX export (`mode=export`).

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
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab.compression.measure import Row, count_params, file_kib, markdown, measure, write_table
from lab.compression.pruning import (
    channel_prune,
    channel_skip,
    global_magnitude,
    make_permanent,
    weight_sparsity,
)
from lab.compression.quantization import export_onnx, onnx_predictor, quantize, resolve_quantization

log = logging.getLogger("lab")



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
