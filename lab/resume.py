"""resume=true: which earlier run to continue. Every run leaves `run_config.yaml` (its composed config);
resume continues the newest run of the same experiment whose configuration matches this one."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from lab.errors import ConfigError
from lab.layout import RunLayout, runs_under
from lab.paths import CONFIG_DIR

# Keys that may differ between a run and its continuation: where things go, how it is started and shown.
# How long it runs may differ too (a finished run can be extended): the runner's `length_keys`.
NOT_CONFIGURATION = ("resume", "ckpt_path", "mode", "modes", "test", "paths", "logger", "optuna", "hydra", "tags",
                     "callbacks.progress_bar", "callbacks.preemption")


@cache  # read once per process: resume compares every saved run's configuration
def mode_settings() -> tuple[str, ...]:
    """The nodes the lab's mode files (conf/mode/*.yaml) hold besides `mode` and `modes`: the modes' settings, not
    the trained model's (only mode=train resumes, and runs saved before `mode` became a config group carry them
    all in their run_config.yaml)."""
    keys = {k for f in (CONFIG_DIR / "mode").glob("*.yaml") for k in yaml.safe_load(f.read_text()) or {}}
    return tuple(sorted(keys - {"mode", "modes"}))


def configuration(cfg: DictConfig, length_keys: tuple[str, ...]) -> dict[str, Any]:
    """The composed config without the keys a continuation may change, as plain (unresolved) data."""
    return _without_changeable(OmegaConf.to_container(cfg, resolve=False), length_keys)


def _without_changeable(data: dict[str, Any], length_keys: tuple[str, ...]) -> dict[str, Any]:
    for key in (*NOT_CONFIGURATION, *mode_settings(), *length_keys):
        *parents, last = key.split(".")
        node = data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def save_run_config(composed: dict[str, Any], output_dir: Path) -> None:
    """`composed`: configuration(cfg, ...) of the run, taken before anything filled or changed it."""
    RunLayout(output_dir).run_config.write_text(yaml.safe_dump(composed, sort_keys=True))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]}={a!r}"]


def find_resume_checkpoint(cfg: DictConfig, length_keys: tuple[str, ...], required: bool = True,
                           own_only: bool = False) -> Path | None:
    """ckpt_path when given; else, of the checkpoints with this configuration, the newest in this run's own folder
    (a preempted job's `preempted.ckpt`, or `last.ckpt`: a sweep finished with the same hydra.sweep.dir), then
    (unless `own_only`: a job of a sweep continues its own folder or none) the newest `last.ckpt` or
    `preempted.ckpt` of an earlier run of this task. None when there is none and not `required`; else a
    ConfigError listing the runs there are (and how to pick one)."""
    if cfg.ckpt_path:
        return Path(cfg.ckpt_path)
    base = Path(cfg.paths.log_dir) / cfg.task_name
    own = RunLayout(Path(cfg.paths.output_dir))
    found = own.resumable_checkpoints()
    if not own_only:
        others = [p for run in runs_under(base) if run.root != own.root for p in run.resumable_checkpoints()]
        found += sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        if not required:
            return None
        raise ConfigError(f"resume=true, but no checkpoints/last.ckpt exists under {base} for task_name="
                          f"{cfg.task_name!r}; start the run without resume=true, or pass ckpt_path=<file>.")
    wanted = configuration(cfg, length_keys)
    others = []
    for ckpt in found:
        saved = RunLayout(ckpt.parent.parent).run_config
        if not saved.is_file():
            others.append(f"{ckpt} (no {saved.name}: configuration unknown)")
            continue
        diff = _differences(_without_changeable(yaml.safe_load(saved.read_text()), length_keys), wanted)
        if not diff:
            return ckpt
        others.append(f"{ckpt} (differs in {', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''})")
    if not required:
        return None
    listing = "; ".join(others[:5]) + (f"; and {len(others) - 5} more" if len(others) > 5 else "")
    raise ConfigError(f"resume=true, but no earlier run of task_name={cfg.task_name!r} under {base} has this "
                      f"configuration. Runs there: {listing}. Continue one of them with resume=true "
                      "ckpt_path=<its last.ckpt>, or repeat the overrides it was started with.")
