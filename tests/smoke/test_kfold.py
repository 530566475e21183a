"""K-fold cross-validation end to end: one multirun over the folds through the real CLI, and its summary (summary.md,
summary_folds.csv, the HTML report) giving each metric's mean ± std over the folds."""

import csv
import json
import os
import statistics
import subprocess
import sys

import pytest

from helpers import SMOKE
from lab.paths import ROOT

SHRUNK = [o for o in SMOKE if not o.startswith(("data.val_size", "trainer.limit_"))] + [
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "callbacks.progress_bar.plain=true"]


def test_three_fold_multirun_summarizes_mean_and_std_over_the_folds(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lab", "-m", "experiment=mlp_mnist", "data.folds=3", "data.fold=range(3)", *SHRUNK,
           f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path}/logs", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((sweep / str(i) / "result.json").read_text()) for i in range(3)]
    assert [r["overrides"][2] for r in results] == ["data.fold=0", "data.fold=1", "data.fold=2"]
    assert all(r["status"] == "ok" for r in results)
    per_fold = {k: [r["metrics"][k] for r in results] for k in ("val/acc", "val/loss", "test/acc", "test/loss")}
    assert len(set(per_fold["val/loss"])) == 3  # three different validation folds (the test set is the same)

    with (sweep / "summary_folds.csv").open() as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    for k, values in per_fold.items():
        assert rows[k]["folds"] == "3"
        assert float(rows[k]["mean"]) == pytest.approx(statistics.mean(values), rel=1e-12)
        assert float(rows[k]["std"]) == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)
        assert [float(v) for v in rows[k]["per_fold"].split()] == values

    md = (sweep / "summary.md").read_text().split("## Cross-validation: mean ± std over the folds")[1]
    for k in ("val/loss", "test/loss"):
        line = next(x for x in md.splitlines() if x.startswith(f"| {k} |"))
        assert f"| {statistics.mean(per_fold[k]):.4g} ± {statistics.stdev(per_fold[k]):.2g} |" in line

    from lab.report import build_html, find_runs

    page = build_html(sweep, find_runs(sweep))
    row = page.split("Cross-validation over folds")[1].split("<td>test/loss</td>")[1].split("</tr>")[0]
    loss = per_fold["test/loss"]
    assert row.startswith(f"<td>{statistics.mean(loss):.4g} ± {statistics.stdev(loss):.2g}</td>")
