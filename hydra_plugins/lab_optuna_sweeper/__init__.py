"""The lab's Optuna sweeper for Hydra (`hydra/sweeper=optuna`, used by conf/hparams_search/*).

Why not hydra-optuna-sweeper: its last release (1.3.0) pins optuna<3, whose SQLite storage needs
sqlalchemy<2 and alembic<1.14; this one runs on current Optuna. It reads the same search-space syntax
(`interval(...)`, `tag(log, interval(...))`, `int(interval(...))`, `range(...)`, `choice(...)`), and adds
what the upstream plugin lacks: resuming a killed study from its storage without re-running finished
trials, pruning through a Lightning callback in the job (lab/optuna_trials.py), a multi-seed objective, and several
workers on one study: sweeps started at the same time (or as SLURM jobs) on the same `study_name` and a shared
storage (PostgreSQL, MySQL, or Optuna's journal file on a shared filesystem) split its `n_trials` between them.
Each worker keeps a heartbeat on its running trials; a trial whose worker died (no heartbeat for `grace_period`
seconds) is marked failed by the others, and its place is taken by a new one.

Search strategies (`sampler`): Optuna's TPE (the default), random search, grid search over a finite space
(`choice(...)` and `range(...)`: every point once) and CMA-ES, all seeded by the sweeper's `seed`.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
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

from lab.optuna_trials import PASSWORD_ENV, StorageError, open_storage, redacted

log = logging.getLogger("lab")

HEARTBEAT = "lab:heartbeat"  # trial system attribute: when its worker last said it is alive (time.time())
WORKER = "lab:worker"  # trial system attribute: <host>:<pid> of the worker that runs it
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
SAMPLER_ATTR = "lab:sampler"  # study user attribute: the hydra.sweeper.sampler the study is searched with


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler for ask-and-tell: it calls `study.stop()` after the last point, which Optuna allows only
    inside `study.optimize`; the sweeper stops by itself when the grid is exhausted."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Any) -> None:
        pass


SAMPLERS = {  # hydra.sweeper.sampler: Optuna's sampler classes
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": AskTellGridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
STARTUP_SAMPLERS = ("tpe", "cmaes")  # the model-based ones, which begin with n_startup_trials random trials


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """An Optuna distribution from a Hydra sweep override (`key=interval(0.1, 1)` and friends)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        points = list(override.sweep_iterator())
        if not points:
            raise ValueError(f"{override.input_line!r} is an empty range: range(start, stop, step) needs start < stop.")
        if all(isinstance(v, int) for v in points):
            return optuna.distributions.IntDistribution(points[0], points[-1], step=int(value.step or 1))
        if len(points) == 1:
            return optuna.distributions.CategoricalDistribution(points)
        return optuna.distributions.FloatDistribution(float(points[0]), float(points[-1]), step=float(value.step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int) or "int" in value.tags:
            return optuna.distributions.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line!r} is not a search space: use interval(), tag(log, interval()), "
                     "int(interval()), range() or choice().")


def grid_points(override: Override) -> list[Any]:
    """The values grid search tries for one key: choice(...)'s values or range(...)'s points; an interval
    (continuous, or as many integers as it holds) is refused rather than discretized behind the user's back."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    if isinstance(value, RangeSweep):
        return list(override.sweep_iterator())
    raise ValueError(f"hydra.sweeper.sampler=grid needs a finite search space, and {override.input_line!r} is an "
                     "interval; give its grid as choice(a, b, ...) or range(start, stop, step), or use "
                     "hydra.sweeper.sampler=tpe, random or cmaes for intervals.")


def check_sampler_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """ValueError naming the keys of hydra.sweeper.sampler_kwargs that the sampler's class does not take."""
    cls = SAMPLERS[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params) | set(kwargs) & {"seed", "search_space"})
    if unknown:
        shown = next(c.__name__ for c in cls.__mro__ if c.__module__.startswith("optuna"))  # grid: GridSampler
        valid = ", ".join(p for p in params if p not in ("seed", "search_space"))
        raise ValueError(f"hydra.sweeper.sampler_kwargs has {', '.join(unknown)}, which optuna.samplers.{shown} "
                         f"(hydra.sweeper.sampler={name}) does not take here; valid keys: {valid or 'none'} (the seed "
                         "is hydra.sweeper.seed).")


def make_sampler(name: str, seed: int | None, n_startup_trials: int, kwargs: dict[str, Any],
                 grid: dict[str, list[Any]] | None = None) -> optuna.samplers.BaseSampler:
    """Optuna's sampler called `name` (SAMPLERS), seeded with `seed`; `grid` is grid search's space (key -> values);
    `kwargs`: more arguments of its class (hydra.sweeper.sampler_kwargs)."""
    cls = SAMPLERS[name]
    check_sampler_kwargs(name, kwargs)
    args: dict[str, Any] = {"seed": seed, **kwargs}
    if name in STARTUP_SAMPLERS:
        args.setdefault("n_startup_trials", n_startup_trials)
    if name == "grid":
        args["search_space"] = grid
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (Optuna's CmaEsSampler needs it, and would say so only at the first trial)
        except ImportError:
            raise ValueError("hydra.sweeper.sampler=cmaes needs the `cmaes` package, which is not installed: "
                             "`pip install cmaes` (or choose tpe, random or grid).") from None
    return cls(**args)


class Heartbeat:
    """A thread that stamps HEARTBEAT on this worker's running trials every `interval` seconds."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, interval
        self.trials: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
        self.thread.start()

    def add(self, trial: optuna.Trial) -> None:
        self.study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
        with self.lock:
            self.trials.add(trial._trial_id)

    def remove(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.trials.discard(trial._trial_id)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = list(self.trials)
            for trial_id in ids:
                try:
                    self.study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception as e:  # finished meanwhile, or the database briefly away: the next beat retries
                    log.debug("heartbeat of trial %d: %s", trial_id, e)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def fail_stale_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Mark failed the running trials of dead workers: no heartbeat (or, without one, no start) for `grace_period`
    seconds. Returns their numbers."""
    now = time.time()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT)
        last = beat if beat is not None else (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - last > grace_period:
            try:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except (RuntimeError, ValueError):  # another worker failed it first
                continue
            stale.append(t.number)
    if stale:
        log.warning("trials %s: their workers stopped (no heartbeat for %ss); marked failed", stale, grace_period)
    return stale


def reserve_job_numbers(sweep_dir: Path, n: int) -> int:
    """The first of `n` consecutive job numbers whose folders (`<sweep_dir>/<number>`, hydra.sweep.subdir's
    default) this worker made itself: workers of one study may share the sweep folder (the presets fix it), and
    none may write into another's job folders; earlier jobs' folders are kept."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    start = 1 + max((int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()), default=-1)
    while True:
        for i in range(start, start + n):
            try:
                (sweep_dir / str(i)).mkdir()  # atomic: exactly one worker makes it
            except FileExistsError:  # another worker got there first: try after its numbers
                start = i + 1
                break
        else:
            return start


class OptunaSweeper(Sweeper):
    """Ask-and-tell search (TPE, random, grid or CMA-ES) over Hydra jobs, with persistent storage, pruning and
    several workers."""

    def __init__(self, study_name: str, storage: str | None, direction: str, n_trials: int, n_jobs: int,
                 sampler: str | dict[str, Any], pruner: dict[str, Any] | None, params: dict[str, str] | None,
                 seeds: list[int] | None, heartbeat_interval: float, grace_period: float, seed: int | None = 0,
                 n_startup_trials: int = 5, sampler_kwargs: dict[str, Any] | None = None) -> None:
        # `direction: ${optimized_mode}` in conf/hydra/sweeper/optuna.yaml: the job's optimized_mode decides
        direction = {"max": "maximize", "min": "minimize"}.get(direction, direction)
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction!r}; valid choices: max, min (optimized_mode).")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be >= 1.")
        if not 0 < heartbeat_interval < grace_period:
            raise ValueError(f"hydra.sweeper.heartbeat_interval={heartbeat_interval} and grace_period={grace_period}: "
                             "need 0 < heartbeat_interval < grace_period (seconds; a worker silent for grace_period "
                             "is taken for dead).")
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        kwargs = dict(sampler_kwargs or {})
        if isinstance(sampler, Mapping):  # the old form, `sampler: {seed: 0, n_startup_trials: 5}`: TPE's arguments
            kwargs = {**dict(sampler), **kwargs}
            sampler = kwargs.pop("name", "tpe")
            seed = kwargs.pop("seed", seed)
            n_startup_trials = kwargs.pop("n_startup_trials", n_startup_trials)
        if sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler={sampler!r} is not valid; valid choices: {', '.join(SAMPLERS)} "
                             "(Optuna's TPE, random search, grid search over choice()/range() values, CMA-ES).")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"hydra.sweeper.seed={seed!r} is not valid: it must be an integer (or null: unseeded).")
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 0:
            raise ValueError(f"hydra.sweeper.n_startup_trials={n_startup_trials!r} is not valid: it must be an "
                             "integer >= 0.")
        check_sampler_kwargs(sampler, kwargs)
        self.sampler_name, self.seed, self.n_startup_trials = sampler, seed, n_startup_trials
        self.sampler_kwargs = kwargs
        self.pruner_cfg = dict(pruner) if pruner else None
        self.params = dict(params or {})
        self.seeds = list(seeds) if seeds else []
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.launcher = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _study(self, grid: dict[str, list[Any]] | None = None) -> optuna.Study:
        sampler = make_sampler(self.sampler_name, self.seed, self.n_startup_trials, self.sampler_kwargs, grid)
        pruner = optuna.pruners.MedianPruner(**self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        storage = open_storage(self.storage) if self.storage else None  # checked before any job is launched
        return optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                   direction=self.direction, load_if_exists=True)

    def _check_same_sampler(self, study: optuna.Study) -> None:
        """A study is searched with one strategy: resuming it (same study_name and storage) with another sampler
        would mix them silently, so it is refused; a study from before the samplers were recorded takes this one."""
        used = study.user_attrs.get(SAMPLER_ATTR)
        if used is None:
            study.set_user_attr(SAMPLER_ATTR, self.sampler_name)
        elif used != self.sampler_name:
            raise ValueError(f"hydra.sweeper.sampler={self.sampler_name} but study {self.study_name!r} in "
                             f"{redacted(self.storage or '') or 'memory'} was searched with sampler={used}; resume it "
                             f"with hydra.sweeper.sampler={used}, or start a new study for this search with "
                             f"hydra.sweeper.study_name=<new name> (e.g. {self.study_name}_{self.sampler_name}).")

    def _space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str], dict[str, list[Any]] | None]:
        """The search space (sweep overrides and `params`), the fixed overrides, and for grid search the grid
        (key -> the values tried)."""
        parser = OverridesParser.create()
        overrides = parser.parse_overrides(arguments)
        searched = {o.get_key_element(): o for o in overrides if o.is_sweep_override()}
        for key, text in self.params.items():
            searched.setdefault(key, parser.parse_override(f"{key}={text}"))
        space = {key: distribution(o) for key, o in searched.items()}
        grid = {key: grid_points(o) for key, o in searched.items()} if self.sampler_name == "grid" else None
        # a searched key wins over a fixed value for it (e.g. one left in a shrunk test command)
        fixed = [o.input_line for o in overrides if not o.is_sweep_override() and o.get_key_element() not in space]
        if not space:
            raise ValueError("the Optuna sweeper has nothing to search: set hydra.sweeper.params or sweep overrides.")
        return space, fixed, grid

    def _ask(self, study: optuna.Study, space: dict[str, Any], heartbeat: Heartbeat) -> list[optuna.Trial]:
        """Up to n_jobs new trials, as many as the study still needs beyond what every worker has running."""
        trials = study.get_trials(deepcopy=False)
        taken = sum(t.state in (*FINISHED, optuna.trial.TrialState.RUNNING) for t in trials)
        asked = []
        for _ in range(min(self.n_jobs, self.n_trials - taken)):
            trial = study.ask(space)
            heartbeat.add(trial)
            study._storage.set_trial_system_attr(trial._trial_id, WORKER, f"{socket.gethostname()}:{os.getpid()}")
            # two workers may ask for the last place at once: the later trial gives way
            earlier = sum(t.state in (*FINISHED, optuna.trial.TrialState.RUNNING) and t.number < trial.number
                          for t in study.get_trials(deepcopy=False))
            if earlier >= self.n_trials:
                heartbeat.remove(trial)
                study._storage.set_trial_system_attr(trial._trial_id, "lab:surplus", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.info("trial %d not run: the study's other workers took its place", trial.number)
                break
            asked.append(trial)
        return asked

    def _jobs(self, trials: list[optuna.Trial], fixed: list[str]) -> list[list[str]]:
        """Each trial's jobs (one per seed), with what the job needs to report for pruning."""
        batch = []
        for trial in trials:
            for i, seed in enumerate(self.seeds or [None]):
                job = list(fixed) + [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in trial.params.items()]
                if seed is not None:
                    job.append(f"seed={seed}")
                if self.storage:  # the job reports intermediate values for pruning (the first seed only)
                    job += [f"optuna.storage='{redacted(self.storage)}'", f"optuna.study_name={self.study_name}",
                            f"optuna.trial_id={trial._trial_id}", f"optuna.report={str(i == 0).lower()}"]
                batch.append(job)
        return batch

    def _tell(self, study: optuna.Study, trials: list[optuna.Trial], returns: list[Any]) -> None:
        per_trial = len(self.seeds or [None])
        for n, trial in enumerate(trials):
            results = returns[n * per_trial:(n + 1) * per_trial]
            errors = [r._return_value for r in results if r.status != JobStatus.COMPLETED]
            if study._storage.get_trial(trial._trial_id).state.is_finished():
                # another worker took this one for dead (no heartbeat for grace_period) and failed it
                log.warning("trial %d finished here, but another worker had already marked it failed (its heartbeat "
                            "stopped for longer than grace_period=%ss); its result is not counted", trial.number,
                            self.grace_period)
                continue
            if any(isinstance(e, optuna.TrialPruned) for e in errors):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            elif errors or any(r.return_value is None or not math.isfinite(r.return_value) for r in results):
                log.warning("trial %d failed: %s", trial.number, errors[0] if errors else "no objective value")
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(trial, sum(float(r.return_value) for r in results) / len(results), skip_if_finished=True)

    def sweep(self, arguments: list[str]) -> list[Any]:
        assert self.config is not None and self.launcher is not None
        try:
            space, fixed, grid = self._space(arguments)
            study = self._study(grid)
            self._check_same_sampler(study)
        except (StorageError, ValueError) as e:  # one paragraph, like the lab's config errors, not a traceback
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if grid is not None:  # every point once: more trials than points would only repeat some
            size = math.prod(len(v) for v in grid.values())
            if self.n_trials > size:
                log.info("hydra.sweeper.sampler=grid: the grid has %d points; running %d trials, not n_trials=%d",
                         size, size, self.n_trials)
                self.n_trials = size
        if self.storage:  # the jobs inherit the URL with its password; their overrides show it hidden
            os.environ[PASSWORD_ENV] = self.storage
        sweep_dir = Path(self.config.hydra.sweep.dir)
        log.info("Optuna study %r in %s: %d of %d trials already finished", self.study_name, redacted(self.storage or ""),
                 len(study.get_trials(deepcopy=False, states=FINISHED)), self.n_trials)
        heartbeat = Heartbeat(study, self.heartbeat_interval)
        try:
            while True:
                fail_stale_trials(study, self.grace_period)
                if len(study.get_trials(deepcopy=False, states=FINISHED)) >= self.n_trials:
                    break
                if grid is not None and study.sampler.is_exhausted(study):  # failed points are not tried again
                    break
                trials = self._ask(study, space, heartbeat)
                if not trials:  # the remaining places are other workers' running trials: wait for them to end
                    time.sleep(min(1.0, self.heartbeat_interval))  # (or to go stale, and take their place)
                    continue
                batch = self._jobs(trials, fixed)
                returns = self.launcher.launch(batch, initial_job_idx=reserve_job_numbers(sweep_dir, len(batch)))
                self._tell(study, trials, list(returns))
                for trial in trials:
                    heartbeat.remove(trial)
        finally:
            heartbeat.close()

        return [self._save_results(study, sweep_dir)]

    def _save_results(self, study: optuna.Study, sweep_dir: Path) -> dict[str, Any]:
        """Write the study's best trial to optimization_results.yaml (as Hydra's own Optuna sweeper does)."""
        results = {"study_name": self.study_name, "storage": redacted(self.storage or ""), "direction": self.direction,
                   "sampler": self.sampler_name, "best_value": None, "best_params": None, "best_trial": None,
                   "n_trials": len(study.trials)}
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            best = study.best_trial
            results.update(best_value=best.value, best_params=best.params, best_trial=best.number)
        out = sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), out)
        if results["best_trial"] is None:  # e.g. a grid whose every point failed: nothing to call best
            log.warning("no trial of study %r completed (%s)", self.study_name, out)
        else:
            log.info("Best %s = %s with %s (%s)", self.config.optimized_metric, results["best_value"],
                     results["best_params"], out)
        return results
