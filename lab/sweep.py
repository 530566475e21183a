"""Sweep summaries: every job writes result.json; at the end of a multirun one table of all jobs.

Each job (whatever the launcher: in-process, joblib workers, SLURM) writes `result.json` into its own
folder from `python -m lab`. The Hydra callback below runs in the launching process when the sweep ends
and writes `summary.csv` and `summary.md` into the sweep folder: every job's overrides, status, the
`optimized_metric` and the other final metrics, best first; where a configuration ran with several seeds, the
interquartile mean of the metric over them with its bootstrap 95 % CI (lab.aggregate); where it ran the folds of
a K-fold cross-validation (`data.fold=...`), the mean ± std of every metric over the folds (also in
summary_folds.csv). `python -m lab.sweep <sweep dir>` rebuilds them (e.g. after a crashed sweep was finished by hand).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lab.aggregate import (
    FoldSummary,
    fold_count,
    fold_markdown,
    fold_metric_order,
    fold_summaries,
    iqm_estimates,
    scores_by_configuration,
)
from lab.aggregate import markdown as aggregate_markdown
from lab.layout import RunLayout
from lab.tables import markdown_table, write_csv

T = TypeVar("T")
FOLDS_FILE = "summary_folds.csv"  # K-fold cross-validation: mean and std over the folds, per configuration


def write_result(output_dir: Path, overrides: list[str], metric: str, mode: str, metrics: dict[str, float] | None,
                 error: str | None = None) -> None:
    """One job's outcome, next to its logs."""
    status = "ok" if error is None else "pruned" if error.startswith("TrialPruned") else "failed"
    record = {"overrides": overrides, "optimized_metric": metric, "optimized_mode": mode,
              "status": status, "error": error, "metrics": metrics or {}}
    output_dir.mkdir(parents=True, exist_ok=True)
    path = RunLayout(output_dir).result
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    tmp.replace(path)


def job_overrides(job_dir: Path) -> list[str]:
    """The overrides a job ran with (Hydra's .hydra/overrides.yaml), [] without the file."""
    import yaml

    path = RunLayout(job_dir).hydra_overrides
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def job_config(job_dir: Path) -> dict[str, Any]:
    """The resolved configuration a job ran with (Hydra's .hydra/config.yaml), {} without the file."""
    import yaml

    path = RunLayout(job_dir).hydra_config
    return dict(yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def read_result(job_dir: Path) -> dict[str, Any] | None:
    """A job's result.json, or None when it wrote none (killed, still running, or not a job of the lab)."""
    path = RunLayout(job_dir).result
    return json.loads(path.read_text()) if path.is_file() else None


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (a folder with .hydra/ or result.json), with its result or 'no result'."""
    rows = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
        record = read_result(job_dir)
        if record is None and RunLayout(job_dir).hydra.is_dir():
            record = {"overrides": job_overrides(job_dir), "status": "no result (killed or still running)",
                      "metrics": {}}
        if record is not None:
            record["job"] = job_dir.name
            rows.append(record)
    return rows


def ranked(rows: list[T], metric: str | None, mode: str,
           result: Callable[[T], dict[str, Any]] = lambda r: r) -> list[T]:
    """The rows best first by their final `metric` (`mode` max or min), rows without a finite value last (in their
    order); `result(row)` is the row's result record (lab.sweep's rows are records themselves)."""
    def key(r: T) -> float:
        v = result(r).get("metrics", {}).get(metric)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return math.inf
        return -v if mode == "max" else v

    return sorted(rows, key=key)


def summarize(sweep_dir: Path, metric: str, mode: str) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md (best first by `metric`, failed and unfinished jobs last)."""
    rows = ranked(collect(sweep_dir), metric, mode)
    metric_keys = sorted({k for r in rows for k in r["metrics"]} - {metric})
    header = ["rank", "job", "overrides", "status", metric, *metric_keys]
    table = [[i, r["job"], " ".join(r["overrides"]), r["status"], *[r["metrics"].get(k, "") for k in header[4:]]]
             for i, r in enumerate(rows, start=1)]
    write_csv(sweep_dir / "summary.csv", header, table)
    lines = [f"# Sweep {sweep_dir.name}: {len(rows)} jobs, sorted by {metric} ({mode})", "",
             *markdown_table(header, table)]
    folds = fold_summaries(rows)
    if folds:  # K-fold cross-validation: mean ± std of every metric over the folds
        lines += ["", *fold_markdown(folds, metric)]
        write_fold_csv(sweep_dir / FOLDS_FILE, folds, metric)
    scores = scores_by_configuration(rows, metric)
    if any(len(v) > 1 for v in scores.values()):  # seeds repeated: the comparison RL papers report (rliable)
        lines += ["", *aggregate_markdown(iqm_estimates(scores), metric)]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return rows


def write_fold_csv(path: Path, folds: list[FoldSummary], metric: str) -> None:
    """One row per configuration and metric: the number of folds, mean, sample std and each fold's value."""
    write_csv(path, ["configuration", "folds", "metric", "mean", "std", "per_fold"],
              ([summary.configuration, fold_count(summary), k, repr(summary.mean[k]), repr(summary.std[k]),
                " ".join(repr(v) for v in summary.values[k])]
               for summary in folds for k in fold_metric_order(summary, metric)))


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml): the sweep table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = summarize(sweep_dir, config.optimized_metric, config.optimized_mode)
            print(f"Sweep summary of {len(rows)} jobs: {sweep_dir / 'summary.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description="Rebuild summary.csv / summary.md of a sweep folder.")
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--metric", help="default: the optimized_metric recorded by the jobs")
    p.add_argument("--mode", choices=["max", "min"])
    args = p.parse_args()
    rows = collect(args.sweep_dir)
    first = next((r for r in rows if "optimized_metric" in r), {})
    metric = args.metric or first.get("optimized_metric")
    if metric is None:
        raise SystemExit(f"error: no job in {args.sweep_dir} recorded a result; pass --metric and --mode.")
    summarize(args.sweep_dir, metric, args.mode or first.get("optimized_mode", "max"))
    print((args.sweep_dir / "summary.md").read_text())


if __name__ == "__main__":
    main()
