"""The run folder's layout, spelled once: what a run writes where, and the one way to find a checkpoint in it.

    <run>/                       cfg.paths.output_dir (logs/<task_name>/runs/<time> or multiruns/<time>/<job>)
      checkpoints/               epoch_NNN.ckpt (best by optimized_metric), last.ckpt, preempted.ckpt (SLURM);
                                 SB3 baselines: last.zip, best.zip, last_replay_buffer.pkl
      media/                     sample grids, attention maps, saliency, plots
      videos/                    RL episodes (agent.video=true), mp4
      csv/version_0/metrics.csv  every logged metric (logger=csv or default)
      wandb/                     the W&B run folder(s); wandb_run_id: the id a resumed run continues
      run_config.yaml            the composed config (what resume=true compares)
      result.json                the job's outcome (status, metrics) for sweep summaries
      test_confusion_matrix.png  a classifier's test
      predictions.csv            mode=predict (a classifier's or regressor's); predictions/ (a generative model's);
                                 episodes.csv (an agent's)
      compression.csv, .md       mode=prune / export (plot: media/accuracy_vs_size.png); pruned/, exported/ the models
      attack.csv, .md            mode=attack (plot: media/accuracy_vs_epsilon.png)
      .hydra/                    Hydra's config, overrides
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LAST = "last.ckpt"
PREEMPTED = "preempted.ckpt"  # saved when SLURM's warning signal comes (lab.slurm)


# Where each part of a run lives, relative to the run folder.
PARTS = {
    "checkpoints": "checkpoints",
    "last_checkpoint": f"checkpoints/{LAST}",
    "preempted_checkpoint": f"checkpoints/{PREEMPTED}",
    "sb3_last": "checkpoints/last.zip",
    "sb3_best": "checkpoints/best.zip",
    "sb3_replay_buffer": "checkpoints/last_replay_buffer.pkl",
    "media": "media",
    "confusion_matrix": "test_confusion_matrix.png",
    "videos": "videos",
    "csv": "csv",
    "wandb_id_file": "wandb_run_id",
    "run_config": "run_config.yaml",
    "result": "result.json",
    "hydra": ".hydra",
    "hydra_overrides": ".hydra/overrides.yaml",
    "hydra_config": ".hydra/config.yaml",
    "predictions": "predictions.csv",
    "episodes": "episodes.csv",
    "generated": "predictions",
    "compression_table": "compression.csv",
    "pruned": "pruned",
    "exported": "exported",
    "compression_plot": "media/accuracy_vs_size.png",
    "attack_table": "attack.csv",
    "attack_plot": "media/accuracy_vs_epsilon.png",
}


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder (`root`): its parts as PARTS names them."""

    root: Path
    checkpoints: Path = field(init=False)
    last_checkpoint: Path = field(init=False)
    preempted_checkpoint: Path = field(init=False)
    media: Path = field(init=False)
    videos: Path = field(init=False)
    csv: Path = field(init=False)
    wandb_id_file: Path = field(init=False)
    run_config: Path = field(init=False)
    result: Path = field(init=False)
    hydra: Path = field(init=False)
    hydra_overrides: Path = field(init=False)
    hydra_config: Path = field(init=False)
    predictions: Path = field(init=False)
    episodes: Path = field(init=False)
    pruned: Path = field(init=False)
    exported: Path = field(init=False)
    confusion_matrix: Path = field(init=False)
    sb3_last: Path = field(init=False)
    sb3_best: Path = field(init=False)
    sb3_replay_buffer: Path = field(init=False)
    generated: Path = field(init=False)
    compression_table: Path = field(init=False)
    compression_plot: Path = field(init=False)
    attack_table: Path = field(init=False)
    attack_plot: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        for name, part in PARTS.items():
            object.__setattr__(self, name, self.root / part)

    @staticmethod
    def of_checkpoint(ckpt: Path) -> RunLayout | None:
        """The run a checkpoint file belongs to (None for a file outside a run's checkpoints/ folder)."""
        ckpt = Path(ckpt)
        return RunLayout(ckpt.parent.parent) if ckpt.parent.name == "checkpoints" else None

    def metrics_files(self) -> list[Path]:
        """The CSV loggers' metrics.csv files (one a version: a resumed run adds one), in version order."""
        return sorted(self.csv.glob("*/metrics.csv"))

    def resumable_checkpoints(self) -> list[Path]:
        """The checkpoints a run can be continued from (preempted.ckpt, last.ckpt) that exist, newest first."""
        found = [p for p in (self.preempted_checkpoint, self.last_checkpoint) if p.is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def best_checkpoint(self) -> Path | None:
        """The run's best checkpoint (the newest epoch_*.ckpt), else last.ckpt, else None."""
        found = [p for p in self.checkpoints.glob("*.ckpt") if p.is_file() and p.name != PREEMPTED]
        best = [p for p in found if p.name != LAST]
        return max(best or found, key=lambda p: p.stat().st_mtime) if found else None


def video_files(folder: Path) -> list[Path]:
    """The episode videos in `folder` (mp4, or gif where no mp4 encoder was found), oldest first by time: names
    such as eval_step_10000 and eval_step_2000 do not sort by step."""
    found = [*folder.glob("*.mp4"), *folder.glob("*.gif")] if folder.is_dir() else []
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def runs_under(folder: Path) -> list[RunLayout]:
    """Every run folder below `folder` (itself included) that holds checkpoints, newest checkpoint first."""
    dirs = {p.parent for p in Path(folder).glob("**/checkpoints/*.ckpt") if p.is_file()}
    runs = [RunLayout(d.parent) for d in dirs]
    return sorted(runs, key=lambda r: max(p.stat().st_mtime for p in r.checkpoints.glob("*.ckpt")), reverse=True)


def find_checkpoint(source: str | Path, key: str) -> Path:
    """The checkpoint `source` names: a checkpoint file; a run folder (its best checkpoint, else last.ckpt); or any
    folder above runs (e.g. logs/cnn_mnist: the newest run under it that has a checkpoint). ValueError naming
    `key` (the setting that gave `source`) when there is none."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"{key}={str(source)!r} does not exist; pass a checkpoint file, a run folder (with "
                         "checkpoints/), or a task's log folder such as logs/cnn_mnist (its newest run).")
    runs = runs_under(path)
    best = runs[0].best_checkpoint() if runs else None
    if best is None:
        raise ValueError(f"{key}={str(source)!r} holds no checkpoints/*.ckpt; train that model first (e.g. "
                         f"`python -m lab experiment=<name>`, whose runs go to logs/<task_name>/runs/) or pass a "
                         "checkpoint file.")
    return best
