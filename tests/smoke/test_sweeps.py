"""Sweeps end to end through the CLI: Optuna search (storage, resume after SIGKILL, pruning), launchers."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from lab.optuna_trials import OptunaPruning, open_storage

TINY = ["logger=csv", "trainer.accelerator=cpu", "~callbacks.model_summary", "agent.total_timesteps=256",
        "agent.eval_freq=128", "agent.eval_episodes=2", "agent.video=false", "env.max_episode_steps=60",
        "env.num_envs=2", "agent.num_steps=32", "agent.batch_size=32", "agent.update_epochs=2",
        "callbacks.progress_bar.plain=true"]


def lab(args: list[str], tmp_path: Path, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lab", *args, f"paths.log_dir={tmp_path}/logs"]
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    if kwargs.pop("background", False):
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def optuna_args(n_trials: int, sweep_dir: Path) -> list[str]:
    # a short grace period: the killed sweep's running trial is taken for dead 3 s after its last heartbeat
    return ["-m", "experiment=ppo_cartpole", "hparams_search=ppo_cartpole_optuna", *TINY,
            f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.seeds=[0,1]", f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
            "agent.batch_size=choice(32,64)", "agent.num_steps=choice(32,64)"]  # narrower than the preset's space


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_optuna_search_stores_trials_and_resumes_without_repeating(tmp_path):
    sweep = tmp_path / "study"
    proc = lab(optuna_args(2, sweep), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = f"sqlite:///{sweep}/optuna.db"
    study = optuna.load_study(study_name="ppo_cartpole", storage=storage)
    assert len(finished(study)) == 2 and (sweep / "optimization_results.yaml").is_file()
    assert len(list(sweep.glob("*/result.json"))) == 4  # 2 trials x 2 seeds
    first_numbers = [t.number for t in study.trials]

    proc = lab(optuna_args(3, sweep), tmp_path)  # same study, one more trial wanted
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="ppo_cartpole", storage=storage)
    assert len(finished(study)) == 3 and [t.number for t in study.trials][:2] == first_numbers
    assert len(list(sweep.glob("*/result.json"))) == 6  # the earlier job folders were kept, not rerun


def test_killed_optuna_sweep_resumes(tmp_path):
    sweep = tmp_path / "study"
    storage = f"sqlite:///{sweep}/optuna.db"
    proc = lab(optuna_args(3, sweep), tmp_path, background=True)
    deadline = time.time() + 300
    try:
        # kill it in the second trial: its first job's folder (2) appears once the first trial (jobs 0 and 1, one
        # per seed) is told. The database is left alone meanwhile: opening it while the sweeper creates its
        # tables can make either of them fail.
        while time.time() < deadline and not (sweep / "2").is_dir():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert (sweep / "2").is_dir(), "the sweep did not get to its second trial within 300 s"
    study = optuna.load_study(study_name="ppo_cartpole", storage=storage)
    done_before = {t.number: t.params for t in finished(study)}
    assert 1 <= len(done_before) < 3
    proc = lab(optuna_args(3, sweep), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="ppo_cartpole", storage=storage)
    assert len(finished(study)) == 3
    for number, params in done_before.items():  # finished trials kept as they were, not re-run
        assert study.trials[number].params == params and study.trials[number].state in (
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)


def test_journal_file_storage_holds_and_resumes_a_study(tmp_path):
    """Optuna's journal file: for clusters with a shared filesystem and no database server."""
    journal = tmp_path / "shared" / "study.log"

    def args(n_trials: int) -> list[str]:
        return [*optuna_args(n_trials, tmp_path / "study"), f"hydra.sweeper.storage=journal://{journal}",
                "hydra.sweeper.seeds=null"]

    proc = lab(args(2), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="ppo_cartpole", storage=open_storage(f"journal://{journal}"))
    first = [(t.number, t.params, t.value) for t in finished(study)]
    assert len(first) == 2 and all(t.intermediate_values for t in finished(study))  # the jobs reported too
    proc = lab(args(3), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="ppo_cartpole", storage=open_storage(f"journal://{journal}"))
    assert len(finished(study)) == 3 and [(t.number, t.params, t.value) for t in finished(study)][:2] == first


def test_a_database_that_is_down_is_a_clear_error_before_any_job(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://lab:secret@127.0.0.1:{port}/lab"
    proc = lab([*optuna_args(2, tmp_path / "study"), f"hydra.sweeper.storage={url}"], tmp_path)
    assert proc.returncode == 2
    (message,) = [line for line in proc.stderr.splitlines() if line.strip()]  # one paragraph, no traceback
    assert message.startswith(f"error: hydra.sweeper.storage='postgresql+psycopg://lab:***@127.0.0.1:{port}/lab': "
                              "the database cannot be reached") and "Connection refused" in message
    assert "secret" not in message and not (tmp_path / "study").exists() and not (tmp_path / "logs").exists()


def test_pruning_callback_reports_and_prunes(tmp_path):
    storage = f"sqlite:///{tmp_path}/p.db"
    pruner = {"n_startup_trials": 1, "n_warmup_steps": 1}
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(**pruner))
    good = study.ask()
    for step in range(3):
        good.report(0.9, step)
    study.tell(good, 0.9)
    trial = study.ask()
    cb = OptunaPruning(storage, "s", trial._trial_id, "val/acc", pruner)
    trainer = SimpleNamespace(callback_metrics={"val/acc": torch.tensor(0.1)}, current_epoch=0, sanity_checking=False)
    cb.on_train_epoch_end(trainer, None)  # still warming up: reported, not pruned
    trainer.current_epoch = 1
    with pytest.raises(optuna.TrialPruned):  # below the median of the finished trial at the same epoch
        cb.on_train_epoch_end(trainer, None)
    assert optuna.load_study(study_name="s", storage=storage).trials[1].intermediate_values == pytest.approx({0: 0.1, 1: 0.1})
    never = OptunaPruning(storage, "s", study.ask()._trial_id, "val/acc", None)  # pruner: null
    for epoch in range(3):
        trainer.current_epoch = epoch
        never.on_train_epoch_end(trainer, None)


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_run_the_sweep_and_summarize(launcher, tmp_path):
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    sweep = tmp_path / "sweep"
    proc = lab(["-m", "experiment=ppo_cartpole", "seed=0,1", *TINY, f"hydra/launcher={launcher}", *extra,
                f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["overrides"].split()[1] for r in rows) == ["seed=0", "seed=1"]
    assert all(r["status"] == "ok" and r["eval/return"] for r in rows)
    summary = (sweep / "summary.md").read_text()  # the two seeds of one configuration: their IQM and its CI
    iqm = summary.split("interquartile mean, 95 % bootstrap CI (rliable)")[1].splitlines()
    assert [line.split(" | ")[1] for line in iqm if line.startswith("| experiment=ppo_cartpole")] == ["2"]
