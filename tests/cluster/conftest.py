"""The cluster tests run against the SLURM cluster and PostgreSQL of scripts/cluster.sh (`make test` and `make
cluster-test` start them). Without them the tests skip, saying why; under CI they fail instead."""

from __future__ import annotations

import os
import subprocess
from functools import cache

import pytest

from lab.paths import ROOT

CLUSTER = ROOT / "scripts" / "cluster.sh"


@cache
def cluster_status() -> tuple[int, str]:
    proc = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(autouse=True)
def _needs_cluster() -> None:
    rc, out = cluster_status()
    if rc != 0:
        message = f"the local cluster is not up (`scripts/cluster.sh up` starts it; status said:\n{out})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The lab's PostgreSQL storage URL, as `scripts/cluster.sh status` prints it."""
    _, out = cluster_status()
    return next(line.strip() for line in out.splitlines() if line.startswith("postgresql+"))
