"""The plug-in contracts: what a family, a mode, a data module and a model give the lab, and what they may.

`lab.run.run` knows no family and no mode by name; it calls these:

- `Runner` (one per family, named by the config's `runner` node): builds the family's pieces from the config,
  fits and tests them. Required: `build`, `fit`, `test`; the rest has defaults.
- `Mode` (one per `mode=<name>`, registered in the config's `modes` node): what the run does with what the
  runner built (train, eval, predict, prune, ...). Required: `run`; the rest has defaults.
- `DataFacts` (a LightningDataModule's mixin): the sizes a model may take from the data (its null keys:
  DATA_KEYS). Every member optional; a data module without the mixin gives none, and the model's keys are set
  in its config instead.
- `ModelHooks` (a LightningModule's mixin): optional hooks the lab calls, each with a default that does
  nothing. A model without the mixin gets those defaults.
- `ImageSampler` (a generative LightningModule's mixin): `sample_images`, what mode=predict draws from a model
  that generates images. Required by the mixin; a model without it is not sampled.

A new family, mode, data set or model plugs in from outside the repository by subclassing these and naming the
class in a config node (docs/architecture.md has a guide and tests/smoke/test_plugins.py does it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from lab.layout import RunLayout


@dataclass
class RunContext:
    """What lab.run has built for the runner and the mode: the config, the run folder, loggers and (if the
    family uses one) the trainer."""

    cfg: DictConfig
    output_dir: Path
    loggers: list[Logger]
    trainer: Trainer | None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.output_dir)


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics mapping (e.g. a trainer's callback_metrics), as floats."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


class Runner(ABC):
    """A family's runner: builds its pieces from the config and says how they fit and test."""

    uses_trainer: bool = True  # False: the runner has its own loop; `trainer` / `callbacks` settings do not apply,
    uses_trainer_keys: tuple[str, ...] = ()  # except these trainer keys, which it reads itself
    can_resume: bool = True  # resume=true (and a requeued SLURM job) may continue its runs from a checkpoint
    length_keys: tuple[str, ...] = ("trainer.max_epochs", "trainer.max_steps")  # may change when a run resumes

    @abstractmethod
    def build(self, cfg: DictConfig) -> None:
        """Build what the run needs from `cfg` (validated and seeded); errors name their key."""

    @abstractmethod
    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        """Train (from `ckpt_path` when resuming); returns the final train/val metrics."""

    @abstractmethod
    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        """Test `ckpt_path` (None: the weights as they are); returns test metrics."""

    def check_checkpoint(self, path: Path) -> None:
        """ValueError unless `path` is a checkpoint this runner can read (checked before anything is built).
        Default: a Lightning checkpoint (a dict with a state_dict), then `check_checkpoint_contents`."""
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"it cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError("it is not a Lightning checkpoint of the lab (no state_dict); pass a .ckpt from a run's "
                             "checkpoints/ folder")
        self.check_checkpoint_contents(ckpt)

    def check_checkpoint_contents(self, ckpt: dict[str, Any]) -> None:  # noqa: B027  (optional: does nothing by default)
        """What the runner needs in a Lightning checkpoint beyond its state_dict. Default: nothing."""

    def configure_trainer(self, trainer: Trainer) -> None:  # noqa: B027  (optional: does nothing by default)
        """Called once the trainer exists, before fit. Default: nothing."""

    def best_checkpoint(self, run: RunContext) -> str | None:
        """What `test=true` tests after fit. Default: the trainer's best checkpoint by optimized_metric (None:
        the final weights)."""
        callback = run.trainer.checkpoint_callback if run.trainer is not None else None
        return (callback.best_model_path or None) if callback is not None else None

    def summary(self, metrics: dict[str, float]) -> list[str]:
        """Lines printed after the final metrics. Default: none."""
        return []


class Mode(ABC):
    """What a run does with what the runner built: `mode=<name>`, a class named in the config's `modes` node
    (`modes.<name>: <module>.<Class>`; its settings, if any, in its `conf/mode/<name>.yaml`). lab.run calls, in
    order: check_settings (validation, before anything is built), prepare (before the runner builds), check
    (after it built, before any output is written), run."""

    needs_checkpoint: bool = True  # ckpt_path is required (checked with the config)
    logs_metrics: bool = True  # lab.run logs the metrics `run` returns to the loggers (once, at step 0)

    def check_settings(self, cfg: DictConfig) -> None:  # noqa: B027  (optional: does nothing by default)
        """ConfigError naming the key for a bad value of the mode's settings. Default: none to check."""

    def prepare(self, runner: Runner, cfg: DictConfig) -> None:  # noqa: B027  (optional: does nothing by default)
        """Change `cfg` before the runner builds (e.g. train's resume picks the checkpoint). Default: nothing."""

    def check(self, runner: Runner, cfg: DictConfig) -> None:  # noqa: B027  (optional: does nothing by default)
        """ConfigError unless the mode applies to what the runner built. Default: it applies to every family."""

    @abstractmethod
    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        """Do the mode's work; returns its metrics (printed, and logged when `logs_metrics`)."""

    def best_checkpoint(self) -> str | None:
        """The checkpoint the run ends with, for its closing lines (train: the best one). Default: none."""
        return None


class DataFacts:
    """What a model may take from a data module (mixed into the lab's LightningDataModules): every member is
    optional; the defaults say "not given". `dims()` turns them into the values of a model's null keys."""

    input_shape: tuple[int, ...] = ()  # one example's shape: images (C, H, W), sequences (T, F), tables (F,)
    classes: Sequence[Any] = ()  # class names, in label order
    target_names: Sequence[str] = ()  # regression targets
    target_mean: Sequence[float] = ()  # and their training rows' mean and std (a regressor reports in these units)
    target_std: Sequence[float] = ()
    vocab: Sequence[str] = ()  # token sequences: the vocabulary (index = token id)
    task_classes: Mapping[str, Sequence[Any]] = {}  # several labelled tasks: task -> class names

    def max_target_len(self) -> int | None:
        """Token sequences: the longest target a model must generate."""
        return None

    def dims(self) -> dict[str, Any]:
        """The values a model's null keys (DATA_KEYS) take from this data; None where it gives none.

        Images (C, H, W): in_channels = channels = C, image_size = H (square images), in_features = C*H*W, and for
        grey images their rows as a sequence (input_size = W, seq_len = H). Sequences (T, F): input_size = F,
        seq_len = T, in_features = T*F (a square one also reads as a 1-channel image). Tables (F,): in_features.
        """
        shape = tuple(self.input_shape)
        dims: dict[str, Any] = dict.fromkeys(("in_channels", "channels", "image_size", "in_features", "input_size",
                                              "seq_len"))
        if len(shape) == 3:
            c, h, w = shape
            dims.update(in_channels=c, channels=c, image_size=h if h == w else None, in_features=c * h * w)
            if c == 1:
                dims.update(input_size=w, seq_len=h)
        elif len(shape) == 2:
            t, f = shape
            dims.update(input_size=f, seq_len=t, in_features=t * f)
            if t == f:
                dims.update(in_channels=1, channels=1, image_size=t)
        elif len(shape) == 1:
            dims["in_features"] = shape[0]
        classes, vocab = list(self.classes), list(self.vocab)
        dims.update(
            num_classes=len(classes) or None,
            class_names=[str(c) for c in classes] or None,
            num_targets=len(self.target_names) or None,
            vocab=vocab or None,
            vocab_size=len(vocab) or None,
            task_classes=dict(self.task_classes) or None,
            max_output_len=self.max_target_len(),
        )
        return dims


# The keys a model's nodes may leave null for the data to fill: derived from what DataFacts gives.
DATA_KEYS: tuple[str, ...] = tuple(DataFacts().dims())


class ImageSampler(ABC):
    """A model that generates images (the lab's GAN, VAE, RBM; yours, by mixing this in): mode=predict samples
    `predict.num_samples` images of it to files and a grid."""

    grid_row: int = 10  # images per row of the grid mode=predict draws (a conditional model: one class a row)

    @abstractmethod
    def sample_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples numbered `indices` (B,), on the model's device: images (B, C, H, W) in [0, 1], and the class
        of each (B,), or None for an unconditional model (the numbers let a conditional one lay out its grid)."""


class ModelHooks:
    """Optional hooks of a LightningModule that the lab calls (mixed into the lab's models); each default does
    nothing, so a model without the mixin runs as well."""

    metric_fallback: tuple[str, str] | None = None  # (metric, mode) to monitor when optimized_metric cannot exist
    optimizer_names: tuple[str, ...] = ()  # names of several optimizers, for their learning-rate lines
    progress_step: str | None = None  # what the epoch lines show as progress (RL: env steps); None: the step

    def check_data(self, datamodule: Any) -> None:
        """ValueError (or FileNotFoundError) when the data does not fit the model. Default: no check."""

    def optimizer_param_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimizer (e.g. transfer learning's frozen and scaled ones; a group's
        `lr_scale` multiplies the learning rate). Default: None, every parameter at the configured rate."""
        return None


def data_facts(datamodule: Any) -> DataFacts:
    """The facts a data module gives: its own when it has the mixin, else none."""
    return datamodule if isinstance(datamodule, DataFacts) else DataFacts()


def model_hooks(model: Any) -> ModelHooks:
    """The hooks of a model: its own when it has the mixin, else the defaults."""
    return model if isinstance(model, ModelHooks) else ModelHooks()
