import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from helpers import write_synthetic_root  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def gan_cli_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """One shrunk `python -m lab experiment=gan_mnist` through the real CLI, as a user runs it (default loggers,
    W&B offline and not silenced), 3 epochs: read by the first-run test and the report tests."""
    import subprocess
    import sys

    from helpers import SMOKE
    from lab.paths import ROOT

    run_dir = tmp_path_factory.mktemp("gan_cli") / "run"
    shrink = [o for o in SMOKE if not o.startswith(("logger=", "~callbacks.model_summary",
                                                    "trainer.enable_model_summary"))]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}
    proc = subprocess.run([sys.executable, "-m", "lab", "experiment=gan_mnist", *shrink, "trainer.max_epochs=3",
                           "model.val_samples=100", "model.test_samples=100", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={run_dir}", "callbacks.progress_bar.plain=true"],
                          cwd=ROOT, env={**env, "WANDB_MODE": "offline", "CI": "true"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    # LAB_GPU_TESTS_ACCELERATOR=cpu rehearses the gpu-marked tests' own code on a CPU (tests/gpu/test_gpu.py)
    if not torch.cuda.is_available() and os.environ.get("LAB_GPU_TESTS_ACCELERATOR", "gpu") == "gpu":
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); run on a GPU "
                                       "machine with `make test-gpu`")
        for item in items:
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)
