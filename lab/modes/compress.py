"""mode=prune and mode=export of a trained classifier (the work is lab.compress's; settings: `compress:`)."""

from __future__ import annotations

from omegaconf import DictConfig

from lab.contracts import Mode, RunContext, Runner
from lab.data_model_runner import DataModelRunner
from lab.errors import building
from lab.modes.base import load_weights, refuse


class Compress(Mode):
    """mode=prune and mode=export of a classifier checkpoint (which one: cfg.mode)."""

    def check_settings(self, cfg: DictConfig) -> None:
        from lab.compress import check_settings as check_compress_settings

        c = cfg.get("compress") or {}
        with building("compress"):
            check_compress_settings(c.get("sparsities", []), c.get("channel_ratios", []), c.get("finetune_epochs", 0),
                  c.get("quantization", "auto"))

    def check(self, runner: Runner, cfg: DictConfig) -> None:
        from lab.models import Classifier

        if not isinstance(runner, DataModelRunner) or not isinstance(runner.model, Classifier):
            target = cfg.model._target_ if "model" in cfg else cfg.runner._target_
            raise refuse(cfg, "classifiers (`model=classifier`, any backbone)", f"`{target}`")

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        from lab.compress import compress_classifier

        assert isinstance(runner, DataModelRunner)
        model = load_weights(runner.model, ckpt_path, context.cfg.mode)
        return compress_classifier(model, runner.datamodule, context.cfg, context.output_dir, context.cfg.mode)
