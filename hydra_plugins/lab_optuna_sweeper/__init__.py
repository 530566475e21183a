"""The lab's Optuna sweeper for Hydra (`hydra/sweeper=optuna`, used by conf/hparams_search/*).

Why not hydra-optuna-sweeper: its last release (1.3.0) pins optuna<3, whose SQLite storage needs
sqlalchemy<2 and alembic<1.14; this one runs on current Optuna. It reads the same search-space syntax
(`interval(...)`, `tag(log, interval(...))`, `int(interval(...))`, `range(...)`, `choice(...)`), and adds
what the upstream plugin lacks: resuming a killed study from its storage without re-running finished
trials, pruning through a Lightning callback in the job (lab/optuna.py), and a multi-seed objective.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lab")


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """An Optuna distribution from a Hydra sweep override (`key=interval(0.1, 1)` and friends)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        return optuna.distributions.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step or 1))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int) or "int" in value.tags:
            return optuna.distributions.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line!r} is not a search space: use interval(), tag(log, interval()), "
                     "int(interval()), range() or choice().")


class OptunaSweeper(Sweeper):
    """Ask-and-tell TPE search over Hydra jobs, with persistent storage and pruning."""

    def __init__(self, study_name: str, storage: str | None, direction: str, n_trials: int, n_jobs: int,
                 sampler: dict[str, Any], pruner: dict[str, Any] | None, params: dict[str, str] | None,
                 seeds: list[int] | None) -> None:
        # `direction: ${optimized_mode}` in conf/hydra/sweeper/optuna.yaml: the job's optimized_mode decides
        direction = {"max": "maximize", "min": "minimize"}.get(direction, direction)
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction!r}; valid choices: max, min (optimized_mode).")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be >= 1.")
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_cfg = dict(sampler or {})
        self.pruner_cfg = dict(pruner) if pruner else None
        self.params = dict(params or {})
        self.seeds = list(seeds) if seeds else []
        self.launcher = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _study(self) -> optuna.Study:
        if self.storage and self.storage.startswith("sqlite:///"):
            Path(self.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        sampler = optuna.samplers.TPESampler(**self.sampler_cfg)
        pruner = optuna.pruners.MedianPruner(**self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        return optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=sampler, pruner=pruner,
                                   direction=self.direction, load_if_exists=True)

    def sweep(self, arguments: list[str]) -> list[Any]:
        assert self.config is not None and self.launcher is not None
        parser = OverridesParser.create()
        overrides = parser.parse_overrides(arguments)
        space = {o.get_key_element(): distribution(o) for o in overrides if o.is_sweep_override()}
        for key, text in self.params.items():
            space.setdefault(key, distribution(parser.parse_override(f"{key}={text}")))
        # a searched key wins over a fixed value for it (e.g. one left in a shrunk test command)
        fixed = [o.input_line for o in overrides if not o.is_sweep_override() and o.get_key_element() not in space]
        if not space:
            raise ValueError("the Optuna sweeper has nothing to search: set hydra.sweeper.params or sweep overrides.")

        study = self._study()
        # A killed sweep leaves RUNNING trials behind: they never finished, so they are failed and re-asked.
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=finished))
        job_idx = sum(1 for p in Path(self.config.hydra.sweep.dir).glob("*/.hydra"))  # keep earlier job folders
        log.info("Optuna study %r in %s: %d of %d trials already finished", self.study_name, self.storage, done,
                 self.n_trials)
        seeds = self.seeds or [None]
        storage = self.storage or ""
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = []
            for trial in trials:
                for i, seed in enumerate(seeds):
                    job = list(fixed) + [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in trial.params.items()]
                    if seed is not None:
                        job.append(f"seed={seed}")
                    if storage:  # the job reports intermediate values for pruning (the first seed only)
                        job += [f"optuna.storage='{storage}'", f"optuna.study_name={self.study_name}",
                                f"optuna.trial_id={trial._trial_id}", f"optuna.report={str(i == 0).lower()}"]
                    batch.append(job)
            returns = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            for n, trial in enumerate(trials):
                results = returns[n * len(seeds):(n + 1) * len(seeds)]
                errors = [r._return_value for r in results if r.status != JobStatus.COMPLETED]
                if any(isinstance(e, optuna.TrialPruned) for e in errors):
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif errors or any(r.return_value is None or not math.isfinite(r.return_value) for r in results):
                    log.warning("trial %d failed: %s", trial.number, errors[0] if errors else "no objective value")
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, sum(float(r.return_value) for r in results) / len(results))
            done = len(study.get_trials(deepcopy=False, states=finished))

        best = study.best_trial
        results = {"study_name": self.study_name, "storage": self.storage, "direction": self.direction,
                   "best_value": best.value, "best_params": best.params, "best_trial": best.number,
                   "n_trials": len(study.trials)}
        out = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), out)
        log.info("Best %s = %s with %s (%s)", self.config.optimized_metric, best.value, best.params, out)
        return [results]
