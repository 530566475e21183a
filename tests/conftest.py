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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    # LAB_GPU_TESTS_ACCELERATOR=cpu rehearses the gpu-marked tests' own code on a CPU (tests/gpu/test_gpu.py)
    if not torch.cuda.is_available() and os.environ.get("LAB_GPU_TESTS_ACCELERATOR", "gpu") == "gpu":
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); run on a GPU "
                                       "machine with `make test-gpu`")
        for item in items:
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)
