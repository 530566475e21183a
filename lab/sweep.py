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
import csv
import json
import math
from pathlib import Path
from typing import Any

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

RESULT_FILE = "result.json"
FOLDS_FILE = "summary_folds.csv"  # K-fold cross-validation: mean and std over the folds, per configuration


def write_result(output_dir: Path, overrides: list[str], metric: str, mode: str, metrics: dict[str, float] | None,
                 error: str | None = None) -> None:
    """One job's outcome, next to its logs."""
    status = "ok" if error is None else "pruned" if error.startswith("TrialPruned") else "failed"
    record = {"overrides": overrides, "optimized_metric": metric, "optimized_mode": mode,
              "status": status, "error": error, "metrics": metrics or {}}
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    tmp.replace(output_dir / RESULT_FILE)


def _job_overrides(job_dir: Path) -> list[str]:
    import yaml

    path = job_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (a folder with .hydra/ or result.json), with its result or 'no result'."""
    rows = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
        result_file = job_dir / RESULT_FILE
        if result_file.is_file():
            record = json.loads(result_file.read_text())
        elif (job_dir / ".hydra").is_dir():
            record = {"overrides": _job_overrides(job_dir), "status": "no result (killed or still running)",
                      "metrics": {}}
        else:
            continue
        record["job"] = job_dir.name
        rows.append(record)
    return rows


def summarize(sweep_dir: Path, metric: str, mode: str) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md (best first by `metric`, failed and unfinished jobs last)."""
    rows = collect(sweep_dir)

    def key(r: dict[str, Any]) -> float:
        v = r["metrics"].get(metric)
        if v is None or not math.isfinite(v):
            return math.inf
        return -v if mode == "max" else v

    rows.sort(key=key)
    metric_keys = sorted({k for r in rows for k in r["metrics"]} - {metric})
    header = ["rank", "job", "overrides", "status", metric, *metric_keys]
    table = []
    for i, r in enumerate(rows, start=1):
        m = r["metrics"]
        table.append([i, r["job"], " ".join(r["overrides"]), r["status"], m.get(metric, ""),
                      *[m.get(k, "") for k in metric_keys]])
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(table)

    def cell(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = [f"# Sweep {sweep_dir.name}: {len(rows)} jobs, sorted by {metric} ({mode})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table]
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
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["configuration", "folds", "metric", "mean", "std", "per_fold"])
        for summary in folds:
            for k in fold_metric_order(summary, metric):
                w.writerow([summary.configuration, fold_count(summary), k, repr(summary.mean[k]), repr(summary.std[k]),
                            " ".join(repr(v) for v in summary.values[k])])


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
