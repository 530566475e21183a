"""Comparisons over seeds as RL papers now report them (Agarwal et al., 2021, "Deep RL at the edge of the
statistical precipice", the `rliable` package): per configuration, the interquartile mean (IQM) of the
runs' final scores with a stratified-bootstrap 95 % confidence interval, and the performance profile
(the fraction of runs scoring above tau, for every tau, with bootstrap bands).

A configuration is a sweep job's overrides without its seed, so `-m agent=ppo,sb3_ppo seed=0,1,2` gives
two configurations of three runs each. Used by the sweep summary (lab.sweep) and the HTML report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SEED_KEYS = ("seed=", "+seed=", "++seed=")


def configuration(overrides: list[str]) -> str:
    """A job's overrides without its seed: the configuration its runs repeat."""
    return " ".join(o for o in overrides if not o.startswith(SEED_KEYS)) or "(defaults)"


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
    lines = [f"## {metric} over seeds: interquartile mean, 95 % bootstrap CI (rliable)", "",
             "| configuration | runs | IQM | 95 % CI | mean | median |", "|---|---|---|---|---|---|"]
    for e in estimates:
        lines.append(f"| {e.configuration.replace('|', chr(92) + '|')} | {e.runs} | {e.iqm:.6g} | "
                     f"[{e.low:.6g}, {e.high:.6g}] | {e.mean:.6g} | {e.median:.6g} |")
    return lines
