"""`python -m lab experiment=<name> [key=value ...]`, or `python -m lab -m ...` for a sweep."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import lab  # noqa: F401  (registers the config resolvers)
from lab.errors import ConfigError
from lab.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from lab.run import run  # imported here so `--help` and config errors stay fast

    try:
        metrics = run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
