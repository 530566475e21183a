"""lab: Hydra-composed PyTorch Lightning experiments (supervised, generative, RL)."""

from collections.abc import Sequence

from omegaconf import ListConfig, OmegaConf

from lab.paths import ROOT

__version__ = "0.1.0"

# `${lab_root:}` in conf/paths: the checkout, so data/ and logs/ do not depend on the working directory.
if not OmegaConf.has_resolver("lab_root"):
    OmegaConf.register_new_resolver("lab_root", lambda: str(ROOT))


def _tasks(devices: object) -> int:
    """`${lab_tasks:${trainer.devices}}` in the SLURM launchers: processes per node for trainer.devices: a count,
    a list of device ids (its length), or auto / -1 (1: SLURM cannot know "all" before the job starts)."""
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:  # "0,1": device ids, as Lightning reads them
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, int) and not isinstance(devices, bool):
        return max(devices, 1)
    if isinstance(devices, (Sequence, ListConfig)) and not isinstance(devices, str):
        return max(len(devices), 1)
    return 1


if not OmegaConf.has_resolver("lab_tasks"):
    OmegaConf.register_new_resolver("lab_tasks", _tasks)
