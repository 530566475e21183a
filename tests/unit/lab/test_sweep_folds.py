"""The sweep summary of a K-fold cross-validation: mean ± std of every metric over the folds, per configuration."""

import csv
import statistics

import pytest

from lab.aggregate import fold_summaries
from lab.report import cross_validation
from lab.sweep import FOLDS_FILE, summarize, write_result


def job(overrides, metrics, status="ok"):
    return {"overrides": overrides, "status": status, "metrics": metrics}


def test_fold_runs_are_grouped_by_configuration_without_the_fold():
    rows = [job(["lr=0.1", "data.folds=3", f"data.fold={i}"], {"val/acc": a, "test/acc": t})
            for i, (a, t) in enumerate([(0.8, 0.7), (0.9, 0.75), (0.7, 0.8)])]
    rows += [job(["lr=0.2", "data.folds=3", f"data.fold={i}"], {"val/acc": 0.5 + i / 10}) for i in (2, 0)]
    rows.append(job(["lr=0.2", "data.folds=3", "data.fold=1"], {}, status="failed"))  # left out
    rows.append(job(["lr=0.3"], {"val/acc": 1.0}))  # no folds: not a cross-validation
    a, b = fold_summaries(rows)
    assert a.configuration == "lr=0.1 data.folds=3" and a.folds == [0, 1, 2] and a.expected == 3
    assert a.mean["val/acc"] == pytest.approx(0.8) and a.std["val/acc"] == pytest.approx(0.1)  # sample std (n - 1)
    assert a.values["test/acc"] == [0.7, 0.75, 0.8] and a.std["test/acc"] == pytest.approx(0.05)
    assert b.folds == [0, 2] and b.values == {"val/acc": [0.5, 0.7]}  # in fold order


def test_a_metric_missing_or_not_finite_in_a_fold_is_left_out():
    rows = [job(["data.fold=0"], {"val/acc": 0.5, "val/loss": 1.0, "extra": 3.0}),
            job(["data.fold=1"], {"val/acc": 0.7, "val/loss": float("nan")})]
    (s,) = fold_summaries(rows)
    assert list(s.values) == ["val/acc"] and s.expected is None


def test_summary_files_show_mean_and_std_over_the_folds(tmp_path):
    values = {0: (0.91, 0.3), 1: (0.87, 0.35), 2: (0.95, 0.2), 3: (0.89, 0.31)}
    for i, (acc, loss) in values.items():
        write_result(tmp_path / str(i), ["experiment=mlp_mnist", "data.folds=5", f"data.fold={i}"], "val/acc", "max",
                     {"val/acc": acc, "val/loss": loss})
    summarize(tmp_path, "val/acc", "max")
    accs = [v[0] for v in values.values()]
    with (tmp_path / FOLDS_FILE).open() as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["val/acc", "val/loss"]  # the optimized metric first
    acc = rows["val/acc"]
    assert acc["configuration"] == "experiment=mlp_mnist data.folds=5" and acc["folds"] == "4 of 5"
    assert float(acc["mean"]) == pytest.approx(statistics.mean(accs)) and float(acc["std"]) == pytest.approx(statistics.stdev(accs))
    assert [float(v) for v in acc["per_fold"].split()] == accs
    md = (tmp_path / "summary.md").read_text()
    assert "## Cross-validation: mean ± std over the folds (sample std, n - 1)" in md
    section = md.split("## Cross-validation")[1]
    line = next(x for x in section.splitlines() if "| val/acc |" in x)
    assert line == f"| val/acc | {statistics.mean(accs):.4g} ± {statistics.stdev(accs):.2g} | 0.91, 0.87, 0.95, 0.89 |"
    assert "`experiment=mlp_mnist data.folds=5`: 4 of 5 folds (0, 1, 2, 3)" in section


def test_the_report_shows_the_same_table():
    from pathlib import Path

    from lab.report import Run

    runs = [Run(Path(str(i)), ["m=a", f"data.fold={i}"], {"status": "ok", "metrics": {"test/acc": v}})
            for i, v in enumerate([0.5, 0.75, 1.0])]
    page = cross_validation(runs, "val/acc")
    assert "Cross-validation over folds" in page and "<code>m=a</code>: 3 folds" in page
    assert "<td>test/acc</td><td>0.75 ± 0.25</td><td>0.5, 0.75, 1</td>" in page
    assert cross_validation(runs[:1], "val/acc") == ""  # one fold: nothing to average
