"""mode=attack of a classifier checkpoint: test accuracy under FGSM and PGD (L-inf, pixel units; settings: `attack:`).

Metrics `attack/clean/acc` and `attack/<method>/eps_<eps>/acc`; the table goes to <run>/attack.csv and
attack.md, the plot of accuracy against epsilon to <run>/media/accuracy_vs_epsilon.png (and the loggers). The
attacks are lab.robustness's, the ones adversarial training (`model.adversarial`) uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from lab.checks import check_choices, check_number
from lab.contracts import Mode, RunContext, Runner
from lab.data_model_runner import DataModelRunner
from lab.errors import ConfigError
from lab.layout import RunLayout
from lab.modes.base import load_weights, refuse
from lab.tables import markdown_table, write_dataclass_csv

log = logging.getLogger("lab")


@dataclass
class Row:
    method: str  # clean | fgsm | pgd
    eps: float
    acc: float
    examples: int


class Attack(Mode):
    """mode=attack: FGSM / PGD accuracy of a classifier checkpoint."""

    def check_settings(self, cfg: DictConfig) -> None:
        from lab.robustness import ATTACKS, check_attack, check_epsilon

        a = cfg.attack  # every key from conf/mode/attack.yaml
        methods, epsilons = list(a.methods or []), list(a.epsilons or [])
        try:
            check_choices("attack.methods", methods, ATTACKS)
            if not epsilons:
                raise ValueError("attack.epsilons is empty; list one or more L-inf radii in [0, 1], e.g. [0.1, 0.3].")
            for eps in epsilons:
                check_epsilon(f"attack.epsilons={epsilons}: epsilon", eps)
            check_attack("attack.", methods[0], a.pgd_steps, a.pgd_step_size)
            if a.limit_batches is not None:
                check_number("attack.limit_batches", a.limit_batches, 1, integer=True, strict=False)
        except ValueError as e:  # each message names its key already
            raise ConfigError(str(e)) from None

    def check(self, runner: Runner, cfg: DictConfig) -> None:
        from lab.models import Classifier
        from lab.robustness import Pixels

        if not isinstance(runner, DataModelRunner) or not isinstance(runner.model, Classifier):
            target = cfg.model._target_ if "model" in cfg else cfg.runner._target_
            raise refuse(cfg, "classifiers (`model=classifier`, any backbone)", f"`{target}`")
        if Pixels.of(runner.datamodule) is None:
            raise ConfigError(f"mode=attack perturbs images in pixel units of [0, 1], but the data `{cfg.data._target_}` "
                              "gives no normalization (`mean_std`) to map its inputs to pixels.")

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        from lab.robustness import Pixels

        assert isinstance(runner, DataModelRunner)
        a = context.cfg.attack
        model = load_weights(runner.model, ckpt_path, context.cfg.mode)
        pixels = Pixels.of(runner.datamodule)
        batches = test_batches(runner.datamodule, context.cfg)
        epsilons = [float(e) for e in a.epsilons]
        rows = evaluate(model, batches, pixels, list(a.methods), epsilons, int(a.pgd_steps), a.pgd_step_size,
                        device_for(context.cfg))
        write_outputs(rows, context.output_dir, context.loggers)
        print(markdown(rows))
        return {"attack/clean/acc" if r.method == "clean" else f"attack/{r.method}/eps_{r.eps:g}/acc": r.acc
                for r in rows}


def device_for(cfg: DictConfig) -> torch.device:
    """The GPU when the trainer may use one and there is one (attacks are many forward and backward passes)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    use_gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def test_batches(datamodule: Any, cfg: DictConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The test batches attacked: `attack.limit_batches` of them, else an integer trainer.limit_test_batches,
    else all."""
    datamodule.prepare_data()
    datamodule.setup("test")
    limit = cfg.attack.limit_batches
    if limit is None:
        limit = cfg.trainer.get("limit_test_batches")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    batches = []
    for batch in datamodule.test_dataloader():
        if limit is not None and len(batches) >= limit:
            break
        batches.append(batch)
    return batches


def evaluate(model: nn.Module, batches: list, pixels: Any, methods: list[str], epsilons: list[float],
             pgd_steps: int, pgd_step_size: float | None, device: torch.device) -> list[Row]:
    """Accuracy on the clean batches, then under each method and epsilon (examples made per batch)."""
    from lab.robustness import adversarial_examples

    model = model.to(device).eval()
    n = sum(len(y) for _, y in batches)
    correct = {("clean", 0.0): 0}
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            correct[("clean", 0.0)] += int((model(x).argmax(-1) == y).sum())
        for method in methods:
            for eps in epsilons:
                adv = adversarial_examples(model, x, y, method, eps, pixels, pgd_steps, pgd_step_size)
                with torch.no_grad():
                    hits = int((model(adv).argmax(-1) == y).sum())
                correct[(method, eps)] = correct.get((method, eps), 0) + hits
    rows = [Row(m, e, c / n, n) for (m, e), c in correct.items()]
    for r in rows:
        log.info("attack: %s eps=%g acc=%.4f (%d test examples)", r.method, r.eps, r.acc, r.examples)
    return rows


def markdown(rows: list[Row]) -> str:
    table = markdown_table(["attack", "epsilon (pixels)", "test acc", "examples"],
                           ([r.method, f"{r.eps:g}", f"{100 * r.acc:.2f} %", r.examples] for r in rows))
    return "\n".join(table) + "\n"


def write_outputs(rows: list[Row], out: Path, loggers: list) -> None:
    """attack.csv, attack.md and media/accuracy_vs_epsilon.png (also logged as an image) in the run folder."""
    layout = RunLayout(out)
    write_dataclass_csv(layout.attack_table, rows)
    layout.attack_table.with_suffix(".md").write_text(markdown(rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.loggers import save_and_log_figure

    clean = next(r.acc for r in rows if r.method == "clean")
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r.method for r in rows if r.method != "clean"):
        points = sorted([(0.0, clean)] + [(r.eps, r.acc) for r in rows if r.method == method])
        ax.plot([e for e, _ in points], [100 * a for _, a in points], marker="o", label=method.upper())
    ax.set_xlabel("epsilon (L-inf, pixel units of [0, 1] images)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_and_log_figure(loggers, "attack/accuracy_vs_epsilon", fig, layout.attack_plot, 0)
