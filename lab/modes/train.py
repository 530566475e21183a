"""mode=train: fit the family's model (resuming when asked, or when SLURM requeued the job), then test the best
checkpoint (`test=true`)."""

from __future__ import annotations

import logging

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from lab.contracts import Mode, RunContext, Runner
from lab.errors import ConfigError
from lab.layout import RunLayout
from lab.resume import find_resume_checkpoint
from lab.slurm import preempted_checkpoint, restarted

log = logging.getLogger("lab")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class Train(Mode):
    """Fit, then (test=true) test the best checkpoint."""

    needs_checkpoint = False
    logs_metrics = False  # the trainer (or the runner's own loop) has logged them as they came

    def __init__(self) -> None:
        self.best: str | None = None

    def prepare(self, runner: Runner, cfg: DictConfig) -> None:
        """resume=true, or a requeued SLURM job (lab.slurm): continue from the run's checkpoint, writing into the
        run being continued."""
        preempted = preempted_checkpoint(cfg.paths.output_dir) is not None
        requeued = not cfg.resume and not cfg.ckpt_path and runner.can_resume and (preempted or restarted())
        if not (cfg.resume or requeued):
            return
        if not runner.can_resume:
            raise ConfigError(f"resume=true: `{cfg.runner._target_}` cannot continue a run from a checkpoint; start "
                              "a new run (without resume=true).")
        # a checkpoint is required when the user asks to resume a single run, or the job left one to continue from
        ckpt = find_resume_checkpoint(cfg, runner.length_keys, required=cfg.resume and not in_multirun() or preempted,
                                      own_only=in_multirun())
        if ckpt is None:  # a job of a sweep being finished (or requeued) that never got as far as a checkpoint
            log.info("%s: no checkpoint of this configuration yet; starting the run",
                     "resume=true" if cfg.resume else "a requeued SLURM job")
            return
        with open_dict(cfg):
            cfg.resume = True  # the same W&B run, too
            cfg.ckpt_path = str(ckpt)
            run = RunLayout.of_checkpoint(ckpt)
            if run is not None:  # keep writing into the run being continued
                cfg.paths.output_dir = str(run.root)
        log.info("Resuming from %s", ckpt)

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        metrics = runner.fit(context, ckpt_path)
        stale = preempted_checkpoint(context.output_dir)
        if stale is not None and (context.trainer is None or context.trainer.is_global_zero):
            stale.unlink()  # the run went past it: a later resume takes last.ckpt
        self.best = runner.best_checkpoint(context)
        if context.cfg.test:
            metrics.update(runner.test(context, self.best))
        return metrics

    def best_checkpoint(self) -> str | None:
        return self.best

