"""mode=prune and mode=export of a trained classifier (the work is lab.compression's; settings: `compress:`, each
mode's own in conf/mode/prune.yaml and export.yaml)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from lab.contracts import Mode, RunContext, Runner
from lab.data_model_runner import DataModelRunner
from lab.errors import building
from lab.layout import RunLayout
from lab.modes.base import load_weights, refuse

if TYPE_CHECKING:  # lab.compression imports onnx and torchao: loaded when a mode runs
    from lab.compression.variants import Variants


class CompressClassifier(Mode):
    """What prune and export share: a classifier checkpoint, the fp32 model measured first, then the variants
    (`variants`) written to the run folder's `files(layout)`."""

    def check(self, runner: Runner, cfg: DictConfig) -> None:
        from lab.models import Classifier

        if not isinstance(runner, DataModelRunner) or not isinstance(runner.model, Classifier):
            target = cfg.model._target_ if "model" in cfg else cfg.runner._target_
            raise refuse(cfg, "classifiers (`model=classifier`, any backbone)", f"`{target}`")

    @abstractmethod
    def variants(self) -> Variants:
        """The function of lab.compression.variants that makes this mode's variants of the fp32 model."""

    @abstractmethod
    def files(self, layout: RunLayout) -> Path:
        """The folder of the run that the variants' files go to."""

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        from lab.compression.variants import compress_classifier

        assert isinstance(runner, DataModelRunner)
        model = load_weights(runner.model, ckpt_path, context.cfg.mode)
        return compress_classifier(model, runner.datamodule, context.cfg, context.output_dir, self.variants(),
                                   self.files(RunLayout(context.output_dir)))


class Prune(CompressClassifier):
    """mode=prune: global magnitude pruning at compress.sparsities, channel pruning at compress.channel_ratios, each
    fine-tuned for compress.finetune_epochs."""

    def check_settings(self, cfg: DictConfig) -> None:
        from lab.compression.pruning import check_prune_settings

        with building("compress"):
            check_prune_settings(cfg.compress.sparsities, cfg.compress.channel_ratios, cfg.compress.finetune_epochs)

    def variants(self) -> Variants:
        from lab.compression.variants import pruned_variants

        return pruned_variants

    def files(self, layout: RunLayout) -> Path:
        return layout.pruned


class Export(CompressClassifier):
    """mode=export: the int8 model (compress.quantization) and the ONNX file run by onnxruntime (compress.onnx)."""

    def check_settings(self, cfg: DictConfig) -> None:
        from lab.compression.quantization import check_export_settings

        with building("compress"):
            check_export_settings(cfg.compress.quantization)

    def variants(self) -> Variants:
        from lab.compression.variants import exported_variants

        return exported_variants

    def files(self, layout: RunLayout) -> Path:
        return layout.exported
