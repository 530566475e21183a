"""`python -m lab.report <run or sweep folder>`: one self-contained HTML report from local logs.

It reads what every run leaves on disk (CSV metrics, .hydra/ config and overrides, result.json, media/
sample grids, videos/) and writes `report.html` into the folder: a single generative run's grids of its first,
middle and last epoch side by side; where configurations repeat over seeds, the interquartile mean of the
objective with its bootstrap 95 % CI and the performance profile (lab.aggregate, rliable); for the folds of a K-fold
cross-validation, the mean ± std of every final metric over them; learning curves of every logged scalar grouped by train/, val/, test/, ...
(mean over seeds with a min-max band, per configuration); the sweep table sorted by the objective; the best
configuration and its final metrics as a table; the newest sample grids and evaluation videos. Images and videos are embedded, so the file can be
mailed or attached as it is. `--wandb` also publishes a W&B Report (wandb-workspaces) with the same
panels for the sweep's W&B group (needs an online account).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.aggregate import (
    FOLD_KEYS,
    fold_count,
    fold_metric_order,
    fold_summaries,
    iqm_estimates,
    performance_profiles,
    scores_by_configuration,
)
from lab.layout import RunLayout, video_files
from lab.sweep import job_config, job_overrides, ranked, read_result
from lab.tables import html_table


@dataclass
class Run:
    path: Path
    overrides: list[str]
    result: dict[str, Any]
    rows: list[dict[str, float]] = field(default_factory=list)

    label: str = ""  # the overrides that set this run apart from the others, seed excepted

    @property
    def record(self) -> dict[str, Any]:
        """The run as a row of lab.sweep (overrides, status, metrics, ...), what lab.aggregate reads."""
        return {"overrides": self.overrides, **self.result}


def label_runs(runs: list[Run]) -> None:
    """Runs that differ only by seed or fold share a label (and a curve with a band over them)."""
    def varying(r: Run) -> list[str]:  # the folds of a cross-validation share a curve too
        return [o for o in r.overrides if not o.startswith(("seed=", "optuna.", "hydra.", *FOLD_KEYS))]

    common = set.intersection(*(set(varying(r)) for r in runs)) if runs else set()
    for r in runs:
        r.label = " ".join(o for o in varying(r) if o not in common)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a Lightning metrics.csv, each with its numeric cells only."""
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            vals = {}
            for k, v in row.items():
                try:
                    vals[k] = float(v)
                except (TypeError, ValueError):
                    continue
            rows.append(vals)
    return rows


def find_runs(root: Path) -> list[Run]:
    """Every run folder under `root` (a folder with .hydra/ and CSV metrics), labelled (`label_runs`)."""
    runs = []
    for hydra_dir in sorted(root.glob("**/.hydra")):
        run_dir = hydra_dir.parent
        metric_files = RunLayout(run_dir).metrics_files()
        if not metric_files:
            continue
        result = read_result(run_dir) or {"status": "no result", "metrics": {}}
        run = Run(run_dir, job_overrides(run_dir), result)
        for path in metric_files:
            run.rows += read_metrics(path)
        runs.append(run)
    label_runs(runs)
    return runs


def curve(run: Run, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key`; a value logged per step and per epoch is drawn from its epoch means."""
    col = key if any(key in r for r in run.rows) else f"{key}_epoch"
    pts = sorted((r["step"], r[col]) for r in run.rows if col in r and "step" in r and math.isfinite(r[col]))
    return [p[0] for p in pts], [p[1] for p in pts]


GROUP_ORDER = ("train", "val", "test", "eval", "rollout", "lr", "time")


def scalar_groups(runs: list[Run]) -> dict[str, list[str]]:
    """Every scalar with a curve (two or more points in a run), once (`k_epoch` is `k`, `k_step` is left out),
    grouped by its prefix: train/, val/, test/, eval/, rollout/, lr/, time/, then any other."""
    names: dict[str, None] = {}
    for r in runs:
        for row in r.rows:
            for k in row:
                if k in ("epoch", "step") or k.endswith("_step"):
                    continue
                names[k.removesuffix("_epoch")] = None
    groups: dict[str, list[str]] = {}
    for k in sorted(names):
        if any(len(curve(r, k)[0]) >= 2 for r in runs):
            groups.setdefault(k.split("/", 1)[0] if "/" in k else "other", []).append(k)
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    return dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def final_table(metrics: dict[str, float]) -> str:
    """The final metrics as a table, each once, grouped by split."""
    clean: dict[str, float] = {}
    for k, v in metrics.items():
        if not k.endswith("_step"):
            clean.setdefault(k.removesuffix("_epoch"), v)
    rows = sorted(clean.items(), key=lambda kv: (kv[0].split("/")[0] not in GROUP_ORDER, kv[0]))
    return html_table(["metric", "value"], ([k, f"{v:.6g}"] for k, v in rows), "final")


def csv_table(path: Path) -> str:
    """A CSV file (header first) as an HTML table."""
    with path.open() as f:
        rows = list(csv.reader(f))
    return html_table(rows[0], rows[1:], "final")


def grid_epochs(run: Run) -> dict[str, list[Path]]:
    """Per kind of image grid (samples, reconstructions, ...): its first, middle and last epoch."""
    kinds: dict[str, list[Path]] = {}
    media = RunLayout(run.path).media
    for p in sorted(media.glob("*_epoch*.png")) if media.is_dir() else []:
        kinds.setdefault(p.stem.rsplit("_epoch", 1)[0], []).append(p)
    picked = {}
    for kind, paths in kinds.items():
        idx = sorted({0, (len(paths) - 1) // 2, len(paths) - 1})
        picked[kind] = [paths[i] for i in idx]
    return picked


def _img(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def plot_png(runs: list[Run], key: str) -> str | None:
    """Mean over the seeds of each configuration, with a min-max band; base64 PNG, or None without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    drawn = False
    for name, members in groups.items():
        curves = [c for c in (curve(r, key) for r in members) if c[0]]
        if not curves:
            continue
        grid = np.unique(np.concatenate([np.asarray(x) for x, _ in curves]))
        ys = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
        mean = np.nanmean(ys, axis=0)
        label = f"{name or 'run'} ({len(curves)} run{'s' if len(curves) > 1 else ''})"
        ax.plot(grid, mean, label=label[:80], marker="o" if len(grid) < 30 else None, markersize=3)
        if len(curves) > 1:
            ax.fill_between(grid, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step (env steps for RL)")
    ax.set_title(key)
    ax.grid(alpha=0.3)
    if len(groups) <= 8:
        ax.legend(fontsize=7)
    return figure_png(fig)


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def across_seeds(runs: list[Run], metric: str | None) -> str:
    """The IQM table over seeds and the performance profile (lab.aggregate), where a configuration has two
    or more finished runs; empty otherwise."""
    if metric is None:
        return ""
    scores = scores_by_configuration([r.record for r in runs], metric)
    if not any(len(v) > 1 for v in scores.values()):
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    estimates = iqm_estimates(scores)
    table = html_table(["configuration", "runs", "IQM", "95 % CI", "mean", "median"],
                       ([f"<code>{html.escape(e.configuration)}</code>", e.runs, f"{e.iqm:.6g}",
                         f"[{e.low:.6g}, {e.high:.6g}]", f"{e.mean:.6g}", f"{e.median:.6g}"] for e in estimates),
                       escape=False)
    everything = np.concatenate(list(scores.values()))
    taus = np.linspace(everything.min(), everything.max(), 101)
    profiles, bands = performance_profiles(scores, taus)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name in profiles:
        ax.plot(taus, profiles[name], label=f"{name} ({len(scores[name])} runs)"[:80])
        ax.fill_between(taus, bands[name][0], bands[name][1], alpha=0.2)
    ax.set_xlabel(f"{metric} threshold tau")
    ax.set_ylabel(f"fraction of runs with {metric} > tau")
    ax.set_title("performance profile (95 % bootstrap bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    png = figure_png(fig)
    return (f"<h2>{html.escape(metric)} over seeds</h2><p>Interquartile mean of the runs' final {html.escape(metric)} "
            "with a stratified-bootstrap 95 % confidence interval, and the performance profile (Agarwal et al., 2021; "
            f"rliable).</p>{table}<img class='plot' alt='performance profile' src='data:image/png;base64,{png}'>")


def cross_validation(runs: list[Run], metric: str | None) -> str:
    """K-fold cross-validation (runs with data.fold=<i>): mean ± std of every final metric over the folds, per
    configuration (lab.aggregate.fold_summaries, as in the sweep's summary.md); empty without folds."""
    summaries = fold_summaries([r.record for r in runs])
    if not summaries:
        return ""
    parts = ["<h2>Cross-validation over folds</h2><p>Mean ± sample standard deviation (n - 1) of each final metric "
             "over the folds; each run validates on its own fold and trains on the others.</p>"]
    for summary in summaries:
        rows = ([k, f"{summary.mean[k]:.4g} ± {summary.std[k]:.2g}", ", ".join(f"{v:.4g}" for v in summary.values[k])]
                for k in fold_metric_order(summary, metric))
        header = ["metric", "mean ± std", f"per fold ({', '.join(map(str, summary.folds))})"]
        parts.append(f"<h3><code>{html.escape(summary.configuration)}</code>: {fold_count(summary)} folds</h3>"
                     + html_table(header, rows, "final"))
    return "".join(parts)


def objective(runs: list[Run]) -> tuple[str | None, str]:
    for r in runs:
        if r.result.get("optimized_metric"):
            return r.result["optimized_metric"], r.result.get("optimized_mode", "max")
    return None, "max"


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}"
         "img.plot{width:48%;min-width:420px}figure{display:inline-block;margin:6px}"
         "figure img,video{max-width:320px}code{font-size:12px}"
         "figure img.grid{max-width:340px;image-rendering:pixelated}")

# what a mode leaves in the run folder (RunLayout's parts): (table, heading, plot, the plot's alt text)
MODE_TABLES = (("compression_table", "Compression", "compression_plot", "accuracy vs size"),  # mode=prune / export
               ("attack_table", "Robustness", "attack_plot", "accuracy vs epsilon"))  # mode=attack


def generative_grids(run: Run) -> list[str]:
    """A generative run's grids of its first, middle and last epoch, per kind of grid."""
    parts = []
    for kind, paths in grid_epochs(run).items():
        figures = "".join(f'<figure><img class="grid" alt="{html.escape(p.name)}" src="{_img(p)}"><figcaption>'
                          f"{html.escape(p.name)}</figcaption></figure>" for p in paths)
        parts.append(f"<h2>{html.escape(kind)}: first, middle and last epoch</h2><div class='grids'>{figures}</div>")
    return parts


def mode_tables(run: Run) -> list[str]:
    """The tables (and plots) that mode=prune / export / attack wrote into the run folder (MODE_TABLES)."""
    parts = []
    layout = RunLayout(run.path)
    for table_part, heading, plot_part, alt in MODE_TABLES:
        table, plot = getattr(layout, table_part), getattr(layout, plot_part)
        if table.is_file():
            parts.append(f"<h2>{heading}</h2>" + csv_table(table))
            if plot.is_file():
                parts.append(f'<img class="plot" alt="{alt}" src="{_img(plot)}">')
    return parts


def learning_curves(runs: list[Run], groups: dict[str, list[str]]) -> list[str]:
    """One plot per scalar (mean and min-max band over the seeds of each configuration), grouped."""
    parts = ["<h2>Learning curves</h2>"]
    for group, keys in groups.items():
        pngs = [(k, png) for k, png in ((k, plot_png(runs, k)) for k in keys) if png]
        if pngs:
            parts.append(f"<h3>{html.escape(group)}/</h3>" + "".join(
                f'<img class="plot" alt="{html.escape(k)}" src="data:image/png;base64,{png}">' for k, png in pngs))
    return parts


def runs_table(ranked_runs: list[Run], metric: str | None) -> str:
    """Every run, best first, with its overrides, status and final objective."""
    def value(r: Run) -> str:
        v = r.result.get("metrics", {}).get(metric)
        return "" if v is None else f"{v:.6g}"

    rows = ([i, html.escape(r.path.name), f"<code>{html.escape(' '.join(r.overrides))}</code>",
             html.escape(r.result.get("status", "")), value(r)] for i, r in enumerate(ranked_runs, 1))
    return "<h2>Runs, best first</h2>" + html_table(["#", "run", "overrides", "status", html.escape(str(metric))],
                                                     rows, escape=False)


def best_configuration(best: Run) -> list[str]:
    """The best run's overrides, resolved config and final metrics."""
    parts = [f"<h2>Best configuration</h2><p><code>{html.escape(' '.join(best.overrides))}</code></p>"]
    cfg = RunLayout(best.path).hydra_config
    if cfg.is_file():
        parts.append(f"<details><summary>resolved config</summary><pre>{html.escape(cfg.read_text())}</pre></details>")
    final = best.result.get("metrics", {})
    if final:
        parts.append("<h3>Final metrics</h3>" + final_table(final))
    return parts


def samples_and_videos(ranked_runs: list[Run]) -> list[str]:
    """The newest grid of each kind and the last evaluation video of the four best runs, embedded."""
    media = []
    for r in ranked_runs[:4]:
        layout = RunLayout(r.path)
        pngs = sorted(layout.media.glob("*.png")) if layout.media.is_dir() else []
        newest = {p.stem.rsplit("_epoch", 1)[0]: p for p in pngs}  # the last epoch of each kind of grid
        for p in newest.values():
            media.append(f'<figure><img src="{_img(p)}">'
                         f"<figcaption>{html.escape(r.path.name)}: {html.escape(p.name)}</figcaption></figure>")
        for v in [p for p in video_files(layout.videos) if p.suffix == ".mp4"][-1:]:  # gifs: no <video> of them
            media.append(f'<figure><video controls muted src="data:video/mp4;base64,'
                         f'{base64.b64encode(v.read_bytes()).decode()}"></video>'
                         f"<figcaption>{html.escape(r.path.name)}: {html.escape(v.name)}</figcaption></figure>")
    return ["<h2>Samples and videos</h2><div class='media'>" + "".join(media) + "</div>"] if media else []


def build_html(root: Path, runs: list[Run], metrics: list[str] | None = None) -> str:
    """The report page: a generative run's grids, the modes' tables, cross-validation, the comparison over seeds,
    learning curves, the runs best first, the best configuration, samples and videos."""
    metric, mode = objective(runs)
    best_first = ranked(runs, metric, mode, lambda r: r.result)
    parts = [f"<h1>lab report: {html.escape(root.name)}</h1>",
             f"<p>{len(runs)} run(s) in <code>{html.escape(str(root))}</code>; objective "
             f"<b>{html.escape(str(metric))}</b> ({mode}).</p>"]
    if len(best_first) == 1:  # a generative run: its grids over training, then its curves
        parts += generative_grids(best_first[0])
    if best_first:
        parts += mode_tables(best_first[0])
    parts += [cross_validation(runs, metric), across_seeds(runs, metric),
              *learning_curves(runs, {"selected": metrics} if metrics else scalar_groups(runs)),
              runs_table(best_first, metric)]
    if best_first:
        parts += best_configuration(best_first[0])
    parts += samples_and_videos(best_first)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>lab report {html.escape(root.name)}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"


def wandb_report(entity: str, project: str, group: str | None, metrics: list[str], title: str) -> Any:
    """A W&B Report object with the same panels: line plots of each metric for the sweep's group
    (mean and min-max band over seeds), the runs table and a media browser. Building it needs no network."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(entity=entity, project=project, name=group or "runs",
                       filters=f"Group = '{group}'" if group else "")
    panels = [wr.LinePlot(title=m, x="trainer/global_step", y=[m], groupby="Group", groupby_aggfunc="mean",
                          groupby_rangefunc="minmax") for m in metrics]
    panels += [wr.RunComparer(), wr.MediaBrowser(media_keys=["eval/video", "val/samples"])]
    return wr.Report(entity=entity, project=project, title=title[:128],
                     description="Built by `python -m lab.report --wandb` from the lab's sweep.",
                     blocks=[wr.H1(text=title[:128]), wr.PanelGrid(runsets=[runset], panels=panels)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a run folder or a sweep folder (logs/<experiment>/multiruns/<date>)")
    p.add_argument("--out", type=Path, help="default: <folder>/report.html")
    p.add_argument("--metrics", nargs="+", help="curves to draw (default: every logged scalar, grouped by split)")
    p.add_argument("--wandb", action="store_true", help="also publish a W&B Report (online account needed)")
    p.add_argument("--entity")
    p.add_argument("--project", default="lab")
    args = p.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder} is not a folder; pass a run folder (logs/<experiment>/runs/<date>) "
                         "or a sweep folder (logs/<experiment>/multiruns/<date>).")
    runs = find_runs(args.folder)
    if not runs:
        raise SystemExit(f"error: no run with CSV metrics under {args.folder} (runs need logger=csv or "
                         "logger=default); nothing to report.")
    out = args.out or args.folder / "report.html"
    out.write_text(build_html(args.folder, runs, args.metrics))
    print(f"Report of {len(runs)} runs: {out}")
    if args.wandb:
        metric, _ = objective(runs)
        if not args.entity:
            raise SystemExit("error: --wandb needs --entity <your W&B entity> (and --project, default 'lab').")
        task = job_config(runs[0].path).get("task_name", "lab")
        group = f"{task}-{args.folder.name}"  # the group lab.run gives a sweep's W&B runs
        report = wandb_report(args.entity, args.project, group, args.metrics or [m for m in (metric,) if m],
                              f"lab: {args.folder.name}")
        report.save()
        print(f"W&B report: {report.url}")


if __name__ == "__main__":
    main()
