"""The one wiring place: config -> runner -> loggers, callbacks, trainer -> fit / test -> final metrics.

What differs by family (building data and model, or env and agent; how they fit and test) is the
runner's, named by the config's `runner` node (lab/runner.py). The CLI (`python -m lab`) and the tests
both call `run(cfg)`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from lab.accel import skip_nvml_recount
from lab.callbacks import epoch_metrics
from lab.errors import ConfigError, building
from lab.instantiate import instantiate
from lab.loggers import WandbLogger, finish_wandb
from lab.modes import checkpoint_mode
from lab.resume import configuration, find_resume_checkpoint, save_run_config
from lab.runner import RunContext, Runner
from lab.slurm import Requeued, preempted_checkpoint, restarted, watch
from lab.validate import check_used, validate

log = logging.getLogger("lab")

WANDB_ID_FILE = "wandb_run_id"


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group(cfg: DictConfig) -> str | None:
    """One W&B group per Hydra multirun: <task_name>-<sweep folder>."""
    return f"{cfg.task_name}-{Path(HydraConfig.get().sweep.dir).name}" if _in_multirun() else None


def build_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    for key, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        extra = {}
        if node._target_ == "lab.loggers.WandbLogger":
            id_file = output_dir / WANDB_ID_FILE
            if node.get("id") is None and cfg.resume and id_file.is_file():
                extra["id"] = id_file.read_text().strip()  # continue the same W&B run
            if node.get("group") is None:
                extra["group"] = sweep_group(cfg)
        loggers.append(instantiate(node, f"logger.{key}", **extra))
    return loggers


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Callback]:
    callbacks = []
    opt = cfg.get("optuna")
    if opt is not None and opt.get("storage") and opt.get("report"):  # a trial of an Optuna sweep
        from lab.pruning import OptunaPruning

        pruner = HydraConfig.get().sweeper.get("pruner") if HydraConfig.initialized() else None
        callbacks.append(OptunaPruning(opt.storage, opt.study_name, int(opt.trial_id), cfg.optimized_metric,
                                       OmegaConf.to_container(pruner) if pruner else None))
    for key, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            cb = instantiate(node, f"callbacks.{key}")
            if isinstance(cb, LearningRateMonitor) and not has_logger:
                continue  # it refuses to run without a logger, and there is nothing to show
            callbacks.append(cb)
    return callbacks


def print_metrics(metrics: dict[str, float]) -> None:
    print("Final metrics:")
    for k in sorted(metrics):
        print(f"  {k}: {metrics[k]:.6g}")


def run_outputs(context: RunContext, best: str | None, wandb_dirs: list[Path]) -> list[str]:
    """The block a run ends with: where its outputs are and the commands that look at them."""
    out = context.output_dir
    lines = ["", "Outputs:", f"  run folder:       {out}"]
    last = out / "checkpoints" / "last.ckpt"
    if best or last.is_file():
        lines.append(f"  best checkpoint:  {best or last}")
    media = out / "media"
    images = sorted(media.glob("*.png"), key=lambda p: p.stat().st_mtime) if media.is_dir() else []
    videos = sorted(media.rglob("*.mp4")) if media.is_dir() else []
    if images or videos:
        lines.append(f"  media folder:     {media}")
    grids = [p for p in images if p.name.startswith("samples")]
    if grids:
        lines.append(f"  last sample grid: {grids[-1]}")
    elif images:  # e.g. a seq2seq run's attention heat maps
        lines.append(f"  last image:       {images[-1]}")
    for d in wandb_dirs:
        offline = d.name.startswith("offline-")
        lines.append(f"  W&B run folder:   {d}")
        if offline:
            lines.append(f"  W&B sync:         wandb sync {d}")
    lines.append(f"  HTML report:      python -m lab.report {out}")
    return lines


class _DropMessages(logging.Filter):
    def __init__(self, *parts: str) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(p in record.getMessage() for p in self.parts)


def _quiet_console() -> None:
    """One stream, and none of the messages the lab causes and a user cannot act on.

    `import lightning` adds its own console handler that also propagates to the root logger; under Hydra (which
    configures the root) every Lightning message would print twice. Lightning also advertises litlogger on every
    run, says it skips its default summary for ours, and its pytree helper warns about a torch deprecation."""
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for h in list(lightning_logger.handlers):
            if type(h) is logging.StreamHandler:
                lightning_logger.removeHandler(h)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages("litlogger", "Skipping setting a default `ModelSummary`"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def _uses_cuda(cfg: DictConfig) -> bool:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def log_config(cfg: DictConfig, loggers: list[Logger], output_dir: Path) -> None:
    config = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(config)
        if isinstance(lg, WandbLogger):
            (output_dir / WANDB_ID_FILE).write_text(lg.experiment.id)
    log.info("Outputs in %s", output_dir)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment as configured; returns its final metrics (train, val and test)."""
    _quiet_console()
    watch()  # in a SLURM job: its warning signal may come before training starts (lab.slurm)
    validate(cfg)
    runner: Runner = instantiate(cfg.runner, "runner")
    check_used(cfg, runner)
    if cfg.trainer.get("sync_batchnorm") and not _uses_cuda(cfg):  # before resume compares configurations
        with open_dict(cfg):  # torch's SyncBatchNorm is CUDA-only; CPU (gloo) DDP keeps per-process statistics
            cfg.trainer.sync_batchnorm = False
        log.info("trainer.sync_batchnorm=false: SyncBatchNorm needs CUDA devices")
    # a requeued SLURM job (lab.slurm) continues the run it was: from its preemption checkpoint, or from its last
    # checkpoint when SLURM stopped it without a warning signal
    preempted = preempted_checkpoint(cfg.paths.output_dir) is not None
    requeued = cfg.mode == "train" and not cfg.resume and not cfg.ckpt_path and runner.can_resume and (
        preempted or restarted())
    if cfg.mode == "train" and (cfg.resume or requeued):
        if not runner.can_resume:
            raise ConfigError(f"resume=true: `{cfg.runner._target_}` cannot continue a run from a checkpoint; start "
                              "a new run (without resume=true).")
        # a checkpoint is required when the user asks to resume a single run, or the job left one to continue from
        ckpt = find_resume_checkpoint(cfg, runner.length_keys, required=cfg.resume and not _in_multirun() or preempted,
                                      own_only=_in_multirun())
        if ckpt is None:  # a job of a sweep being finished (or requeued) that never got as far as a checkpoint
            log.info("%s: no checkpoint of this configuration yet; starting the run",
                     "resume=true" if cfg.resume else "a requeued SLURM job")
        else:
            with open_dict(cfg):
                cfg.resume = True  # the same W&B run, too
                cfg.ckpt_path = str(ckpt)
                if ckpt.parent.name == "checkpoints":  # keep writing into the run being continued
                    cfg.paths.output_dir = str(ckpt.parent.parent)
            log.info("Resuming from %s", ckpt)
    if cfg.ckpt_path:
        with building("ckpt_path", cfg.ckpt_path):
            runner.check_checkpoint(Path(cfg.ckpt_path))
    seed_everything(cfg.seed, workers=True)
    skip_nvml_recount()
    composed = configuration(cfg, runner.length_keys)  # what resume compares: before the runner fills in sizes
    runner.build(cfg)
    mode = checkpoint_mode(cfg.mode)  # predict, explain, attack, prune, export: lab.modes
    if mode is not None:
        mode.check(runner, cfg)
    output_dir = Path(cfg.paths.output_dir)  # made once everything is built: a config error leaves nothing behind
    output_dir.mkdir(parents=True, exist_ok=True)
    loggers = build_loggers(cfg, output_dir)
    trainer: Trainer | None = None
    if runner.uses_trainer:
        callbacks = build_callbacks(cfg, has_logger=bool(loggers))
        trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
        runner.configure_trainer(trainer)
    rank_zero = trainer is None or trainer.is_global_zero
    if rank_zero:
        save_run_config(composed, output_dir)
        log_config(cfg, loggers, output_dir)

    context = RunContext(cfg, output_dir, loggers, trainer)
    metrics: dict[str, float] = {}
    best: str | None = None
    wandb_dirs = [Path(lg.experiment.dir).parent for lg in loggers if isinstance(lg, WandbLogger) and rank_zero]
    try:
        if cfg.mode == "train":
            metrics.update(runner.fit(context, cfg.ckpt_path))
            if rank_zero and (stale := preempted_checkpoint(output_dir)) is not None:
                stale.unlink()  # the run went past it: a later resume takes last.ckpt
            best = runner.best_checkpoint(context)
            if cfg.test:
                metrics.update(runner.test(context, best))
        elif mode is not None:
            metrics.update(mode.run(runner, context, cfg.ckpt_path))
            for lg in loggers if rank_zero else []:  # e.g. compress/<variant>/<figure>, attack/<method>/<eps>/acc
                lg.log_metrics(metrics, step=0)
                lg.save()
        else:
            metrics.update(runner.test(context, cfg.ckpt_path))
    except Requeued as preempted:  # lab.slurm: the checkpoint is saved; SLURM starts the job again
        finish_wandb()
        preempted.requeue()
        raise
    finally:
        finish_wandb()
    metrics = epoch_metrics(metrics)  # each value once (no `_step` / `_epoch` copies)
    if rank_zero:
        print_metrics(metrics)
        for line in [*runner.summary(metrics), *run_outputs(context, best, wandb_dirs)]:
            print(line)
    return metrics
