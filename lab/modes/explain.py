"""mode=explain of a checkpoint: what the model looks at (settings: `explain:`).

- Classifiers (any backbone): Captum's Saliency (|d logit / d pixel|, Simonyan et al., 2014) and
  IntegratedGradients (Sundararajan et al., 2017) for the predicted class of the first `explain.num_images` test
  inputs, taken with respect to the [0, 1] pixels (lab.robustness.PixelModel undoes the data's normalization),
  so the integrated gradients' baseline, all zeros, is a black image. Each method is one image grid, input |
  heat map per example, titled with the true and the predicted class: <run>/media/explain_<method>.png, also
  logged to W&B / TensorBoard. Sequences (T, F) are drawn as (T, F) images, their attributions the same way.
  Metric `explain/integrated_gradients/delta`: the mean |sum of attributions - (F(x) - F(baseline))|, the
  completeness gap of the integral's approximation (0 for an exact integral).
- Seq2seq models with attention: their attention maps are the explanation (Seq2Seq.attention_figure) for the
  first test sources, four per image: <run>/media/attention_<k>.png.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from lab.checks import check_choices, check_number
from lab.contracts import Mode, RunContext, Runner
from lab.data_model_runner import DataModelRunner
from lab.errors import ConfigError
from lab.modes.base import load_weights, refuse

log = logging.getLogger("lab")

METHODS = ("saliency", "integrated_gradients")
PAIRS_PER_ROW = 4  # (input, heat map) pairs per row of a grid
ATTENTION_PER_FIGURE = 4


class Explain(Mode):
    """mode=explain: saliency / integrated gradients of a classifier, attention maps of a seq2seq model."""

    def check_settings(self, cfg: DictConfig) -> None:
        e = cfg.explain  # every key from conf/mode/explain.yaml
        methods = list(e.methods or [])
        try:
            check_choices("explain.methods", methods, METHODS)
            check_number("explain.num_images", e.num_images, 1, integer=True, strict=False)
            check_number("explain.ig_steps", e.ig_steps, 1, integer=True, strict=False)
        except ValueError as err:  # each message names its key already
            raise ConfigError(str(err)) from None

    def check(self, runner: Runner, cfg: DictConfig) -> None:
        from lab.models import Classifier, Seq2Seq
        from lab.models.seq2seq import RNNSeq2Seq

        model = runner.model if isinstance(runner, DataModelRunner) else None
        if isinstance(model, Seq2Seq):
            if isinstance(model.net, RNNSeq2Seq) and model.net.attention_kind == "none":
                raise ConfigError("mode=explain draws a seq2seq model's attention maps, but this one has none "
                                  "(model.net.attention=none); train it with attention (additive | dot | general) or "
                                  "model/net=transformer.")
            return
        if not isinstance(runner, DataModelRunner) or not isinstance(model, Classifier):
            target = cfg.model._target_ if "model" in cfg else cfg.runner._target_
            raise refuse(cfg, "classifiers (`model=classifier`, any backbone) and seq2seq models with attention",
                         f"`{target}`")

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        from lab.models import Seq2Seq

        assert isinstance(runner, DataModelRunner)
        model = load_weights(runner.model, ckpt_path, context.cfg.mode)
        if isinstance(model, Seq2Seq):
            return explain_seq2seq(model, runner.datamodule, context.cfg, context)
        return explain_classifier(model, runner.datamodule, context.cfg, context)


# ---- attributions ---------------------------------------------------------------------------------------------
def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, ig_steps: int = 50
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions (shaped like x) of `model`'s logit `target` (B,) to its inputs x (B, ...), and for
    integrated gradients (baseline: zeros) the per-example completeness gap (B,) (None for saliency)."""
    from captum.attr import IntegratedGradients, Saliency

    from lab.robustness import input_gradients

    x = x.detach().clone().requires_grad_(True)
    with input_gradients(model):
        if method == "saliency":
            return Saliency(model).attribute(x, target=target, abs=True).detach(), None
        if method == "integrated_gradients":
            attr, delta = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                               n_steps=ig_steps, return_convergence_delta=True)
            return attr.detach(), delta.detach()
    raise ValueError(f"explain.methods: {method!r} is not valid; valid choices: {', '.join(METHODS)}.")


def as_image(x: torch.Tensor) -> torch.Tensor:
    """One example's input for display: (H, W) grey, (H, W, 3) RGB, or a sequence (T, F) as it is."""
    if x.dim() == 3:
        return x.permute(1, 2, 0) if x.shape[0] == 3 else x.mean(0)
    return x.reshape(x.shape[0], -1) if x.dim() >= 2 else x.reshape(1, -1)


def as_heat_map(attr: torch.Tensor, method: str) -> torch.Tensor:
    """One example's attributions (like its input) as (H, W): saliency the max |gradient| over channels,
    integrated gradients the sum over channels (the channels' shares add up)."""
    if attr.dim() == 3:
        return attr.abs().amax(0) if method == "saliency" else attr.sum(0)
    return attr.reshape(attr.shape[0], -1) if attr.dim() >= 2 else attr.reshape(1, -1)


def attribution_figure(x01: torch.Tensor, attr: torch.Tensor, y: torch.Tensor, pred: torch.Tensor,
                       class_names: list[str], method: str):
    """The grid: input | heat map for each example, titled with its true and predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = x01.shape[0]
    per_row = min(PAIRS_PER_ROW, n)
    rows = math.ceil(n / per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(3.2 * per_row, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax_in, ax_map = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        image = as_image(x01[i]).float().cpu().numpy()
        ax_in.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        wrong = int(y[i]) != int(pred[i])
        ax_in.set_title(f"true {class_names[int(y[i])]}\npred {class_names[int(pred[i])]}", fontsize=7,
                        color="red" if wrong else "black")
        heat = as_heat_map(attr[i], method).float().cpu().numpy()
        if method == "saliency":
            ax_map.imshow(heat, cmap="hot", vmin=0.0, vmax=max(float(heat.max()), 1e-12))
        else:  # signed: red for the predicted class, blue against it, white 0
            bound = max(float(abs(heat).max()), 1e-12)
            ax_map.imshow(heat, cmap="bwr", vmin=-bound, vmax=bound)
        ax_map.set_title(method.replace("_", " ") if method == "saliency" else "integr. grad.", fontsize=7)
    fig.suptitle(f"{method.replace('_', ' ')} of the predicted class (first {n} test inputs)", fontsize=9)
    fig.tight_layout()
    return fig


# ---- the mode -------------------------------------------------------------------------------------------------
def first_test_examples(datamodule: Any, n: int) -> list:
    datamodule.prepare_data()
    datamodule.setup("test")
    dataset = datamodule.test_set
    return [dataset[i] for i in range(min(n, len(dataset)))]


def explain_classifier(model: nn.Module, datamodule: Any, cfg: DictConfig, context: RunContext) -> dict[str, float]:
    from lab.loggers import save_and_log_figure
    from lab.robustness import PixelModel, Pixels

    e = cfg.explain
    examples = first_test_examples(datamodule, int(e.num_images))
    x = torch.stack([ex[0] for ex in examples])
    y = torch.as_tensor([int(ex[1]) for ex in examples])
    pixels = Pixels.of(datamodule)
    if pixels is None:
        log.info("explain: the data gives no normalization (mean_std): attributions are to the model's inputs")
        pixels = Pixels()
    pixel_model = PixelModel(model, pixels).eval()
    x01 = pixels.to_pixels(x)
    with torch.no_grad():
        pred = pixel_model(x01).argmax(-1)
    metrics: dict[str, float] = {"explain/images": float(len(y)), "explain/acc": float((pred == y).float().mean())}
    for method in e.methods:
        attr, delta = attribute(pixel_model, x01, pred, method, int(e.ig_steps))
        if delta is not None:
            metrics[f"explain/{method}/delta"] = float(delta.abs().mean())
        fig = attribution_figure(x01, attr, y, pred, list(model.class_names), method)
        path = save_and_log_figure(context.loggers, f"explain/{method}", fig,
                                   context.layout.media / f"explain_{method}.png", 0)
        log.info("explain: %s of %d test inputs: %s", method, len(y), path)
    return metrics


def explain_seq2seq(model: nn.Module, datamodule: Any, cfg: DictConfig, context: RunContext) -> dict[str, float]:
    from lab.data.seq2seq import collate
    from lab.loggers import save_and_log_figure
    from lab.models.seq2seq.decoding import greedy

    examples = first_test_examples(datamodule, int(cfg.explain.num_images))
    src, src_len, _ = collate(examples)
    with torch.no_grad():
        tokens, weights = greedy(model.net, model.net.encode(src, src_len), model.max_output_len, need_weights=True)
    for k, start in enumerate(range(0, len(examples), ATTENTION_PER_FIGURE)):
        part = slice(start, start + ATTENTION_PER_FIGURE)
        fig = model.attention_figure(src[part], src_len[part], tokens[part], weights[part])
        fig.suptitle(f"attention, test sources {start + 1}-{min(start + ATTENTION_PER_FIGURE, len(examples))}")
        path = save_and_log_figure(context.loggers, "explain/attention", fig,
                                   context.layout.media / f"attention_{k + 1}.png", 0)
        log.info("explain: attention maps: %s", path)
    return {"explain/images": float(len(examples))}
