"""The one wiring place: config -> runner (the family) and mode -> loggers, callbacks, trainer -> the mode's work ->
final metrics. It knows no family and no mode by name: the config's `runner` node names the family's Runner and
`modes.<mode>` the Mode (the contracts: lab.contracts). The CLI (`python -m lab`) and the tests call `run(cfg)`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Trainer, seed_everything
from omegaconf import DictConfig

from lab.accel import cpu_sync_batchnorm, skip_nvml_recount
from lab.callbacks import build_callbacks, epoch_metrics
from lab.console import metric_lines, output_lines, quiet_console
from lab.contracts import Mode, RunContext, Runner
from lab.errors import building
from lab.instantiate import instantiate
from lab.layout import RunLayout
from lab.loggers import WandbLogger, build_loggers, finish_wandb, log_config
from lab.modes import load_mode
from lab.resume import configuration, save_run_config
from lab.slurm import Requeued, watch
from lab.validate import check_used, validate

log = logging.getLogger("lab")


def prepare(cfg: DictConfig) -> tuple[Runner, Mode, dict]:
    """Validate `cfg`, then build the runner's pieces and check the mode applies to them: every config error comes
    out here, before anything is written. Returns the runner, the mode and the configuration as composed (what
    resume=true compares, taken before the runner fills in sizes from the data)."""
    validate(cfg)
    runner: Runner = instantiate(cfg.runner, "runner")
    check_used(cfg, runner)
    mode = load_mode(cfg)
    cpu_sync_batchnorm(cfg)
    mode.prepare(runner, cfg)
    if cfg.ckpt_path:
        with building("ckpt_path", cfg.ckpt_path):
            runner.check_checkpoint(Path(cfg.ckpt_path))
    seed_everything(cfg.seed, workers=True)
    skip_nvml_recount()
    composed = configuration(cfg, runner.length_keys)
    runner.build(cfg)
    mode.check(runner, cfg)
    return runner, mode, composed


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment as configured; returns its final metrics."""
    quiet_console()
    watch()  # in a SLURM job: its warning signal may come before training starts (lab.slurm)
    runner, mode, composed = prepare(cfg)
    layout = RunLayout(Path(cfg.paths.output_dir))  # made once everything is built: a config error leaves nothing
    layout.root.mkdir(parents=True, exist_ok=True)
    loggers = build_loggers(cfg, layout)
    trainer: Trainer | None = None
    if runner.uses_trainer:
        callbacks = build_callbacks(cfg, has_logger=bool(loggers))
        trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
        runner.configure_trainer(trainer)
    rank_zero = trainer is None or trainer.is_global_zero
    if rank_zero:
        save_run_config(composed, layout.root)
        log_config(cfg, loggers, layout)
    wandb_dirs = [Path(lg.experiment.dir).parent for lg in loggers if isinstance(lg, WandbLogger) and rank_zero]
    context = RunContext(cfg, layout.root, loggers, trainer)
    try:
        metrics = mode.run(runner, context, cfg.ckpt_path)
        if mode.logs_metrics and rank_zero:  # e.g. compress/<variant>/<figure>, attack/<method>/<eps>/acc
            for lg in loggers:
                lg.log_metrics(metrics, step=0)
                lg.save()
    except Requeued as preempted:  # lab.slurm: the checkpoint is saved; SLURM starts the job again
        finish_wandb()
        preempted.requeue()
        raise
    finally:
        finish_wandb()
    metrics = epoch_metrics(metrics)  # each value once (no `_step` / `_epoch` copies)
    if rank_zero:
        for line in [*metric_lines(metrics), *runner.summary(metrics),
                     *output_lines(layout, mode.best_checkpoint(), wandb_dirs)]:
            print(line)
    return metrics

