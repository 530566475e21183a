"""The one wiring place: config -> data, model, callbacks, loggers, trainer -> fit / test / eval.

The CLI (`python -m lab`) and the tests both call `run(cfg)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from lab.errors import ConfigError
from lab.logging import WandbLogger, finish_wandb
from lab.validate import group_options, validate

log = logging.getLogger("lab")

WANDB_ID_FILE = "wandb_run_id"


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, turning a constructor's ValueError into a ConfigError that names the key."""
    try:
        # plain Python containers, so checkpoints (hyperparameters) load with torch's weights_only
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause: BaseException = e
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ValueError):
            raise ConfigError(f"Invalid config under `{key}`: {cause}") from None
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            raise ConfigError(
                f"Invalid config under `{key}`: {cause}. A key left over from another option (e.g. an experiment's "
                "backbone settings after `backbone=<other>`) or a misspelt key; see the option's YAML in conf/ "
                "for its keys, and delete extra ones with `~key`."
            ) from None
        raise


def find_resume_checkpoint(cfg: DictConfig) -> Path:
    """The newest `last.ckpt` among this experiment's earlier runs (or ckpt_path when given)."""
    if cfg.ckpt_path:
        return Path(cfg.ckpt_path)
    base = Path(cfg.paths.log_dir) / cfg.task_name
    found = sorted(base.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"resume=true, but no checkpoints/last.ckpt exists under {base} for task_name="
                          f"{cfg.task_name!r}; start the run without resume=true, or pass ckpt_path=<file>.")
    return found[-1]


def sweep_group(cfg: DictConfig) -> str | None:
    """One W&B group per Hydra multirun: <task_name>-<sweep folder>."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{cfg.task_name}-{Path(HydraConfig.get().sweep.dir).name}"
    return None


def build_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    for key, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        extra: dict[str, Any] = {}
        if node._target_ == "lab.logging.WandbLogger":
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
        from lab.optuna import OptunaPruning

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


def check_model_fits_data(model: LightningModule, datamodule: LightningDataModule, cfg: DictConfig) -> None:
    """Modules that define `check_data(datamodule)` check there, before training, that they fit the data."""
    check = getattr(model, "check_data", None)
    if check is None:
        return
    try:
        check(datamodule)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"The model `{cfg.model._target_}` does not fit the data `{cfg.data._target_}`: {e}") from None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


def print_metrics(metrics: dict[str, float]) -> None:
    print("Final metrics:")
    for k in sorted(metrics):
        print(f"  {k}: {metrics[k]:.6g}")


def _single_log_stream() -> None:
    """`import lightning` adds its own console handler that also propagates to the root logger;
    under Hydra (which configures the root) every Lightning message would print twice."""
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for h in list(lightning_logger.handlers):
            if type(h) is logging.StreamHandler:
                lightning_logger.removeHandler(h)


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


def run_agent(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    """RL: env + agent -> fit (one epoch per evaluation period) -> final evaluation of the best checkpoint.

    `agent=sb3_*` baselines run Stable-Baselines3's own loop under the same env config, seeds and loggers.
    """
    from agents.common.module import RLModule
    from agents.sb3 import SB3Agent

    if cfg.get("env") is None:
        raise ConfigError("an RL experiment needs an env: add `env=<name>`; valid choices: "
                          f"{', '.join(group_options('env'))}.")
    env = instantiate(cfg.env, "env")  # checked here, so its errors name `env`
    agent = instantiate(cfg.agent, "agent", env=cfg.env)  # the node: Hydra would flatten an object to a dict
    try:
        agent.check_env()
    except ValueError as e:
        raise ConfigError(f"The agent `{cfg.agent._target_}` does not suit env.id={env.id!r}: {e}") from None
    loggers = build_loggers(cfg, output_dir)
    video_dir = output_dir / "videos"
    metrics: dict[str, float] = {}
    if isinstance(agent, SB3Agent):
        log_config(cfg, loggers, output_dir)
        try:
            metrics = agent.run(cfg.mode, loggers, output_dir, cfg.ckpt_path, video_dir)
        finally:
            finish_wandb()
        print_metrics(metrics)
        return metrics

    assert isinstance(agent, RLModule)
    callbacks = build_callbacks(cfg, has_logger=bool(loggers))
    trainer: Trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    # DDP: every process steps its own envs (seeded by rank) and gradients are averaged; the budget
    # agent.total_timesteps and eval_freq count env steps over all processes.
    agent.world_size = trainer.world_size
    trainer.fit_loop.max_epochs = agent.num_epochs
    if trainer.is_global_zero:
        log_config(cfg, loggers, output_dir)
    try:
        if cfg.mode == "train":
            trainer.fit(agent, ckpt_path=cfg.ckpt_path)
            metrics.update(_scalars(trainer.callback_metrics))
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if cfg.test and best:
                agent.load_policy(best)
        else:
            try:
                agent.load_policy(cfg.ckpt_path)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"ckpt_path={cfg.ckpt_path!r} does not fit this agent and env: "
                                  f"{str(e).splitlines()[0]} Evaluate with the experiment and overrides it was "
                                  "trained with.") from None
        if trainer.is_global_zero:
            metrics.update(agent.final_evaluation(agent.eval_episodes, video_dir, loggers))
    finally:
        finish_wandb()
    if trainer.is_global_zero:
        print_metrics(metrics)
        if "eval/return" in metrics:
            print(f"Evaluation over {agent.eval_episodes} episodes: return {metrics['eval/return']:.2f} "
                  f"± {metrics['eval/return_std']:.2f}")
    return metrics


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment as configured; returns its final metrics (train, val and test)."""
    _single_log_stream()
    validate(cfg)
    if cfg.mode == "train" and cfg.resume:
        ckpt = find_resume_checkpoint(cfg)
        with open_dict(cfg):
            cfg.ckpt_path = str(ckpt)
            if ckpt.parent.name == "checkpoints":  # keep writing into the run being continued
                cfg.paths.output_dir = str(ckpt.parent.parent)
        log.info("Resuming from %s", ckpt)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed, workers=True)
    if cfg.trainer.get("sync_batchnorm") and not _uses_cuda(cfg):
        with open_dict(cfg):  # torch's SyncBatchNorm is CUDA-only; CPU (gloo) DDP keeps per-process statistics
            cfg.trainer.sync_batchnorm = False
        log.info("trainer.sync_batchnorm=false: SyncBatchNorm needs CUDA devices")
    if cfg.get("agent") is not None:
        return run_agent(cfg, output_dir)
    datamodule: LightningDataModule = instantiate(cfg.data, "data")
    model: LightningModule = instantiate(cfg.model, "model")
    check_model_fits_data(model, datamodule, cfg)
    loggers = build_loggers(cfg, output_dir)
    callbacks = build_callbacks(cfg, has_logger=bool(loggers))
    trainer: Trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        log_config(cfg, loggers, output_dir)

    metrics: dict[str, float] = {}
    try:
        if cfg.mode == "train":
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            metrics.update(_scalars(trainer.callback_metrics))
            if cfg.test:
                best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
                trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
                metrics.update(_scalars(trainer.callback_metrics))
        else:
            try:
                trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            except RuntimeError as e:
                if "state_dict" not in str(e):
                    raise
                raise ConfigError(
                    f"ckpt_path={cfg.ckpt_path!r} does not match the configured model: {str(e).splitlines()[0]} "
                    "Evaluate with the same experiment and overrides the checkpoint was trained with."
                ) from None
            metrics.update(_scalars(trainer.callback_metrics))
    finally:
        finish_wandb()
    if trainer.is_global_zero:
        print_metrics(metrics)
    return metrics
