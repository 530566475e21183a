"""Comparisons over seeds as RL papers now report them (Agarwal et al., 2021, "Deep RL at the edge of the
statistical precipice", the `rliable` package): per configuration, the interquartile mean (IQM) of the
runs' final scores with a stratified-bootstrap 95 % confidence interval, and the performance profile
(the fraction of runs scoring above tau, for every tau, with bootstrap bands).

A configuration is a sweep job's overrides without its seed, so `-m agent=ppo,sb3_ppo seed=0,1,2` gives
two configurations of three runs each. Used by the sweep summary (lab.sweep) and the HTML report.

K-fold cross-validation (`-m data.folds=K 'data.fold=range(K)'`) is summarized the usual way instead: per
configuration (the overrides without `data.fold`), the mean and the sample standard deviation (n - 1) of every final
metric over its folds (`fold_summaries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.tables import markdown_table

SEED_KEYS = ("seed=", "+seed=", "++seed=")
FOLD_KEYS = ("data.fold=", "+data.fold=", "++data.fold=")
FOLDS_KEYS = ("data.folds=", "+data.folds=", "++data.folds=")


def configuration(overrides: list[str], repeated: tuple[str, ...] = SEED_KEYS) -> str:
    """A job's overrides without its seed (or without the `repeated` keys, e.g. FOLD_KEYS): the configuration its
    runs repeat."""
    return " ".join(o for o in overrides if not o.startswith(repeated)) or "(defaults)"


def scores_by_configuration(rows: list[dict[str, Any]], metric: str) -> dict[str, np.ndarray]:
    """The finite final `metric` of every finished job (lab.sweep's rows), grouped by configuration."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        v = r.get("metrics", {}).get(metric)
        if r.get("status") == "ok" and isinstance(v, (int, float)) and math.isfinite(v):
            groups.setdefault(configuration(r.get("overrides", [])), []).append(float(v))
    return {k: np.asarray(v, dtype=np.float64) for k, v in groups.items()}


@dataclass
class Estimate:
    configuration: str
    runs: int
    iqm: float
    low: float  # the 95 % confidence interval of the IQM (stratified bootstrap, percentile)
    high: float
    mean: float
    median: float


def iqm_estimates(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> list[Estimate]:
    """IQM and its bootstrap 95 % CI per configuration (rliable), best IQM first."""
    from rliable import library as rly
    from rliable import metrics

    matrices = {k: v.reshape(-1, 1) for k, v in scores.items()}  # (runs, tasks=1), rliable's layout
    point, interval = rly.get_interval_estimates(
        matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
        random_state=np.random.RandomState(seed))
    out = [Estimate(k, len(v), float(point[k][0]), float(interval[k][0, 0]), float(interval[k][1, 0]),
                    float(np.mean(v)), float(np.median(v))) for k, v in scores.items()]
    return sorted(out, key=lambda e: -e.iqm)


def performance_profiles(scores: dict[str, np.ndarray], taus: np.ndarray, reps: int = 2000,
                         seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score distributions P(score > tau) over `taus` per configuration, and their (2, len(taus)) 95 %
    bootstrap bands: rliable's create_performance_profile, with a seeded bootstrap."""
    from rliable import library as rly

    matrices = {k: v.reshape(-1, 1) for k, v in scores.items()}
    return rly.get_interval_estimates(matrices, lambda x: rly.score_distributions(x, taus), reps=reps,
                                      random_state=np.random.RandomState(seed))


def markdown(estimates: list[Estimate], metric: str) -> list[str]:
    """The IQM table as Markdown lines."""
    return [f"## {metric} over seeds: interquartile mean, 95 % bootstrap CI (rliable)", "",
            *markdown_table(["configuration", "runs", "IQM", "95 % CI", "mean", "median"],
                            ([e.configuration, e.runs, e.iqm, f"[{e.low:.6g}, {e.high:.6g}]", e.mean, e.median]
                             for e in estimates))]


@dataclass
class FoldSummary:
    """One configuration's final metrics over the folds of a K-fold cross-validation."""

    configuration: str  # the jobs' overrides without data.fold
    folds: list[int]  # the folds that finished, in order
    expected: int | None  # K, from data.folds=K in the overrides (None when it is not overridden)
    values: dict[str, list[float]]  # metric -> its value in each fold (in `folds` order)

    @property
    def mean(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.values.items()}

    @property
    def std(self) -> dict[str, float]:
        """The sample standard deviation over the folds (ddof=1, as scikit-learn's users usually report it)."""
        return {k: float(np.std(v, ddof=1)) for k, v in self.values.items()}


def _value(overrides: list[str], keys: tuple[str, ...]) -> int | None:
    for o in overrides:
        if o.startswith(keys):
            try:
                return int(o.split("=", 1)[1])
            except ValueError:
                return None
    return None


def fold_summaries(rows: list[dict[str, Any]]) -> list[FoldSummary]:
    """Per configuration with two or more finished folds (jobs with `data.fold=<i>` among their overrides): every
    final metric that all its folds have, finite, over the folds. rows: lab.sweep's (overrides, status, metrics)."""
    groups: dict[str, list[tuple[int, dict[str, float]]]] = {}
    expected: dict[str, int | None] = {}
    for r in rows:
        overrides = r.get("overrides", [])
        fold = _value(overrides, FOLD_KEYS)
        if fold is None or r.get("status") != "ok":
            continue
        key = configuration(overrides, FOLD_KEYS)
        groups.setdefault(key, []).append((fold, r.get("metrics", {})))
        expected[key] = _value(overrides, FOLDS_KEYS)
    out = []
    for key, runs in groups.items():
        if len(runs) < 2:
            continue
        runs.sort(key=lambda fm: fm[0])
        shared = set.intersection(*(set(m) for _, m in runs))
        values = {k: [float(m[k]) for _, m in runs] for k in sorted(shared)
                  if all(isinstance(m[k], (int, float)) and math.isfinite(m[k]) for _, m in runs)}
        out.append(FoldSummary(key, [f for f, _ in runs], expected[key], values))
    return out


def fold_metric_order(summary: FoldSummary, metric: str | None) -> list[str]:
    """The metrics of a fold summary, the optimized one first, then val/, test/, train/ and the others by name."""
    rank = {"val": 0, "test": 1, "train": 2}
    return sorted(summary.values, key=lambda k: (k != metric, rank.get(k.split("/")[0], 3), k))


def fold_count(summary: FoldSummary) -> str:
    """'5', or '3 of 5' when some folds of data.folds=K did not finish (or were not asked for)."""
    n = len(summary.folds)
    return f"{n} of {summary.expected}" if summary.expected and summary.expected != n else str(n)


def fold_markdown(summaries: list[FoldSummary], metric: str | None) -> list[str]:
    """The cross-validation tables as Markdown lines: per configuration, each metric's mean ± std over the folds."""
    lines = ["## Cross-validation: mean ± std over the folds (sample std, n - 1)"]
    for s in summaries:
        lines += ["", f"`{s.configuration}`: {fold_count(s)} folds ({', '.join(map(str, s.folds))})", "",
                  *markdown_table(["metric", "mean ± std", "per fold"],
                                  ([k, f"{s.mean[k]:.4g} ± {s.std[k]:.2g}", ", ".join(f"{v:.4g}" for v in s.values[k])]
                                   for k in fold_metric_order(s, metric)))]
    return lines
