"""A user's own project outside the checkout (docs/own-experiment.md): its model, configs and env,
run with `python -m lab --config-dir myproj/conf` from a temporary folder, alone, in a sweep and under DDP."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_documented_files, write_image_folder
from lab.paths import ROOT


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder outside the repository holding myproj/ exactly as the docs show it, and its images."""
    where = tmp_path_factory.mktemp("elsewhere")
    assert ROOT not in where.parents
    files = write_documented_files("own-experiment.md", "myproj", where)
    assert {"myproj/my_pkg/model.py", "myproj/conf/model/my_linear.yaml", "myproj/conf/experiment/my_exp.yaml",
            "myproj/my_envs.py"} <= files
    write_image_folder(where / "myproj" / "images", 30)
    # one more option of the user's, in a group the docs' example leaves alone
    (where / "myproj/conf/model/optimizer").mkdir(parents=True)
    (where / "myproj/conf/model/optimizer/my_adam.yaml").write_text("_target_: torch.optim.Adam\n_partial_: true\n")
    return where


def lab(project: Path, args: list[str], timeout: int = 300, searchpath: bool = False) -> subprocess.CompletedProcess:
    """`python -m lab --config-dir myproj/conf ...` from `project`; or with hydra.searchpath instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_SERVICE")}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    where = [f"hydra.searchpath=[file://{project}/myproj/conf]"] if searchpath else ["--config-dir", "myproj/conf"]
    cmd = [sys.executable, "-m", "lab", *where, *args, "logger=csv", f"paths.log_dir={project}/logs"]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


RL = ["agent.total_timesteps=3000", "agent.eval_freq=1000", "agent.learning_starts=200", "agent.train_freq=4",
      "agent.gradient_steps=1", "agent.target_update_interval=100", "agent.exploration_fraction=0.3",
      "agent.eval_episodes=4", "agent.video=false", "agent.log_interval=500", "agent.learning_rate=1e-3"]


@pytest.mark.parametrize("searchpath", [False, True], ids=["config-dir", "searchpath"])
def test_own_model_and_configs_from_outside(project, data_dir, searchpath):
    run_dir = project / f"run_mnist_{searchpath}"
    proc = lab(project, ["experiment=my_exp", f"paths.data_dir={data_dir}", "data.verify=false", "data.val_size=100",
                         f"hydra.run.dir={run_dir}"], searchpath=searchpath)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "_target_: my_pkg.model.MyModule" in config
    assert result(run_dir)["metrics"]["test/acc"] > 0.8  # synthetic digits: chance is 0.1


def test_own_model_on_an_image_folder(project):
    run_dir = project / "run_images"
    proc = lab(project, ["experiment=my_exp", "data=image_folder", "data.root=myproj/images", "data.val_size=0.2",
                         f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    hparams = (run_dir / "csv" / "version_0" / "hparams.yaml").read_text()
    assert "in_features: 3072" in hparams and "num_classes: 2" in hparams  # 3 x 32 x 32 RGB, two class folders
    assert result(run_dir)["metrics"]["test/acc"] > 0.9  # red vs blue: chance is 0.5


def test_help_and_errors_list_the_users_options(project):
    proc = lab(project, ["--help"])
    assert proc.returncode == 0 and "my_exp" in proc.stdout and "my_linear" in proc.stdout
    proc = lab(project, ["experiment=my_expp"])
    assert proc.returncode != 0 and "my_exp" in proc.stderr
    proc = lab(project, ["experiment=cnn_mnist", "model.optimizer._target_=torch.optim.Lamb"])  # the lab's own check
    assert proc.returncode == 2 and re.search(r"error: model.optimizer._target_='torch.optim.Lamb'.*adamw.*my_adam",
                                              proc.stderr)


@pytest.mark.parametrize("agent", ["dqn", "sb3_dqn"])
def test_own_env_by_module_and_id(project, agent):
    run_dir = project / f"run_{agent}"
    proc = lab(project, ["experiment=dqn_cartpole", f"agent={agent}", "env.id=my_envs:Sign-v0",
                         f"hydra.run.dir={run_dir}", *RL])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = result(run_dir)["metrics"]
    assert metrics["eval/ep_len"] == 20  # the episode length the module registered
    assert metrics["eval/return"] >= 18  # matching a sign is learnt in 3000 steps; chance is 10


def test_own_env_in_a_sweep_and_under_ddp(project):
    sweep = project / "sweep"
    proc = lab(project, ["-m", "experiment=dqn_cartpole", "env.id=my_envs:Sign-v0", "seed=0,1",
                         f"hydra.sweep.dir={sweep}", *RL])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [result(sweep / str(i))["status"] for i in (0, 1)] == ["ok", "ok"]
    run_dir = project / "run_ddp"
    proc = lab(project, ["experiment=dqn_cartpole", "env.id=my_envs:Sign-v0", "trainer=ddp", "trainer.accelerator=cpu",
                         "trainer.devices=2", f"hydra.run.dir={run_dir}", *RL])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result(run_dir)["metrics"]["eval/ep_len"] == 20


@pytest.mark.parametrize(("env_id", "expected"), [
    ("no_such_module:Sign-v0", "the module 'no_such_module' cannot be imported.*ModuleNotFoundError"),
    ("my_envs:Sing-v0", "not a registered Gymnasium environment \\(after importing 'my_envs'\\).*Sign-v0"),
])
def test_bad_env_ids_name_the_module_or_close_ids(project, env_id, expected):
    proc = lab(project, ["experiment=dqn_cartpole", f"env.id={env_id}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(expected, proc.stderr.replace("\n", " ")), proc.stderr[-2000:]
