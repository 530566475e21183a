"""int8 quantization and ONNX export (`mode=export`): torchao's static (PT2E) and dynamic paths, torch.ao's dynamic
quantization for recurrent layers, torch.onnx with a dynamic batch run by onnxruntime."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab.compression.pruning import RECURRENT

log = logging.getLogger("lab")

QUANTIZATIONS = ("auto", "static", "dynamic", "none")
# torch.ao's dynamic quantization has int8 kernels for these; a plain nn.RNN stays fp32 under it
DYNAMIC_INT8 = {nn.LSTM, nn.GRU, nn.Linear}


def check_export_settings(quantization: Any) -> None:
    """ValueError naming mode=export's compress.quantization unless it is one of QUANTIZATIONS."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"compress.quantization={quantization!r} is not valid; valid choices: "
                         f"{', '.join(QUANTIZATIONS)}.")


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
