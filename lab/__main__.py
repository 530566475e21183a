"""`python -m lab experiment=<name> [key=value ...]`, or `python -m lab -m ...` for a sweep."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import lab  # noqa: F401  (registers the config resolvers)
from lab.errors import ConfigError
from lab.paths import CONFIG_DIR


def add_user_projects(config_sources: list) -> None:
    """A user's config folder (`--config-dir myproj/conf`, or a `hydra.searchpath` entry) lives in their own
    project: its parent folder goes on sys.path (and PYTHONPATH, for env and DDP subprocesses), so that
    `_target_: my_pkg.model.MyModule` and `env.id=my_envs:MyEnv-v0` import from that project."""
    for source in config_sources:
        if source.schema != "file" or Path(source.path).resolve() == CONFIG_DIR:  # the lab's own conf/
            continue
        project = str(Path(source.path).resolve().parent)
        if project not in sys.path:
            sys.path.insert(0, project)
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lab.run import run  # imported here so `--help` and config errors stay fast
    from lab.sweep import write_result

    hc = HydraConfig.get()
    add_user_projects(hc.runtime.config_sources)
    def record(metrics: dict[str, float] | None, error: str | None = None) -> None:
        # cfg.paths.output_dir, not Hydra's: resume=true writes into the run it continues
        write_result(Path(cfg.paths.output_dir), list(hc.overrides.task), cfg.optimized_metric, cfg.optimized_mode,
                     metrics, error)

    try:
        metrics = run(cfg)
    except ConfigError as e:
        record(None, error=str(e))
        print(f"error: {e}", file=sys.stderr)
        if hc.mode == RunMode.MULTIRUN:
            raise  # a failed job of the sweep (recorded in its summary), not the end of the process
        sys.exit(2)
    except Exception as e:
        record(None, error=f"{type(e).__name__}: {e}")
        raise
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # DDP's other processes run this too, in the same folder
        record(metrics)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
