"""Optuna studies in the real PostgreSQL of scripts/cluster.sh: workers sharing one study, a killed worker's trial
failed and replaced, pruning across workers, trials as SLURM jobs, optuna-dashboard, and a clear error for a bad
password before anything is submitted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from cluster_helpers import final_states, lab, slurm_jobs, summary_rows, wait_for

from helpers import SMOKE
from lab.optuna_trials import open_storage

pytestmark = pytest.mark.cluster

TINY_RL = ["-m", "experiment=ppo_cartpole", "hparams_search=ppo_cartpole_optuna", "logger=csv", "~callbacks.model_summary",
           "agent.total_timesteps=256", "agent.eval_freq=128", "agent.eval_episodes=2", "agent.video=false",
           "env.max_episode_steps=60", "env.num_envs=2", "agent.num_steps=32", "agent.batch_size=32",
           "agent.update_epochs=2", "callbacks.progress_bar.plain=true", "agent.batch_size=choice(32,64)",
           "agent.num_steps=choice(32,64)", "hydra.sweeper.seeds=null"]  # one job a trial
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def study_args(pg_url: str, name: str, n_trials: int, sweep: Path) -> list[str]:
    return [f"hydra.sweeper.storage={pg_url}", f"hydra.sweeper.study_name={name}",
            f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweep.dir={sweep}", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=4"]


def load(pg_url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(pg_url))


def trial_ids_run(sweep: Path) -> list[int]:
    """The Optuna trial ids the jobs of a sweep folder ran (from their result.json overrides)."""
    ids = []
    for result in sweep.glob("*/result.json"):
        overrides = json.loads(result.read_text())["overrides"]
        ids += [int(o.split("=", 1)[1]) for o in overrides if o.startswith("optuna.trial_id=")]
    return ids


def test_cluster_status_prints_the_storage_url_of_a_working_database(pg_url):
    assert pg_url.startswith("postgresql+psycopg://") and "127.0.0.1" in pg_url
    name = f"probe-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=open_storage(pg_url))
    study.tell(study.ask(), 1.0)
    assert load(pg_url, name).best_value == 1.0


def test_two_workers_share_one_study_without_duplicated_or_lost_trials(tmp_path, pg_url):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    # one sweep folder for both, as the presets have it: neither may write into the other's job folders
    workers = [lab([*TINY_RL, *study_args(pg_url, name, 6, tmp_path / "shared")], tmp_path / "logs",
                   background=True) for _ in (0, 1)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    study = load(pg_url, name)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert len(finished) == 6
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # a failed trial here can only be a place another worker took first, never a lost run
    assert all(t.system_attrs.get("lab:surplus") for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    ran = trial_ids_run(tmp_path / "shared")  # each trial run once, in a job folder of its own
    assert sorted(ran) == sorted(t._trial_id for t in finished)
    assert len(list((tmp_path / "shared").glob("*/.hydra"))) == 6
    assert len({t.system_attrs["lab:worker"] for t in finished}) == 2  # both workers ran some


def test_a_killed_workers_trial_is_failed_and_the_study_still_finishes(tmp_path, pg_url):
    name = f"killed-{uuid.uuid4().hex[:8]}"
    slow = ["+callbacks.slow._target_=helpers.SlowSteps", "+callbacks.slow.seconds=1.0"]
    doomed = lab([*TINY_RL, *slow, *study_args(pg_url, name, 2, tmp_path / "doomed")], tmp_path / "logs",
                 background=True)
    try:
        def running() -> bool:
            try:
                return any(t.state == optuna.trial.TrialState.RUNNING for t in load(pg_url, name).trials)
            except KeyError:  # the study is not created yet
                return False

        wait_for(running, 120, "the first worker's trial running", doomed)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its in-process job, as a node failure would
        doomed.wait()
    (orphan,) = [t for t in load(pg_url, name).trials if t.state == optuna.trial.TrialState.RUNNING]

    proc = lab([*TINY_RL, *study_args(pg_url, name, 2, tmp_path / "survivor")], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "their workers stopped (no heartbeat for 4s); marked failed" in proc.stderr + proc.stdout
    study = load(pg_url, name)
    assert study.trials[orphan.number].state == optuna.trial.TrialState.FAIL
    assert len([t for t in study.trials if t.state in FINISHED]) == 2
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_pruning_compares_trials_of_different_workers(tmp_path, pg_url, data_dir):
    """Worker 1's trials learn; worker 2's (learning rate 1e-9) is pruned at its first epoch against them."""
    name = f"pruning-{uuid.uuid4().hex[:8]}"
    common = ["-m", "experiment=mlp_mnist", "hparams_search=cnn_mnist_optuna", *SMOKE, f"paths.data_dir={data_dir}",
              "trainer.limit_train_batches=null", "trainer.max_epochs=3", "hydra.sweeper.params=null",
              "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0"]
    good = lab([*common, *study_args(pg_url, name, 2, tmp_path / "w1"), "model.optimizer.lr=interval(0.005,0.01)"],
               tmp_path / "logs")
    assert good.returncode == 0, good.stderr[-3000:]
    bad = lab([*common, *study_args(pg_url, name, 3, tmp_path / "w2"), "model.optimizer.lr=interval(1e-9,2e-9)"],
              tmp_path / "logs")
    assert bad.returncode == 0, bad.stderr[-3000:]
    trials = load(pg_url, name).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.PRUNED]
    assert list(trials[2].intermediate_values) == [0]  # stopped after its first epoch
    assert trials[2].intermediate_values[0] < min(t.intermediate_values[0] for t in trials[:2])
    assert [r["status"] for r in summary_rows(tmp_path / "w2")] == ["pruned"]


def test_trials_run_as_slurm_jobs_report_to_postgresql(tmp_path, pg_url):
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "sweep"
    proc = lab([*TINY_RL, *study_args(pg_url, name, 2, sweep), "hydra.sweeper.n_jobs=2", "hydra/launcher=slurm",
                "hydra.launcher.timeout_min=10"], tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = slurm_jobs(sweep)
    assert len(jobs) == 2 and final_states(jobs) == ["COMPLETED"] * 2
    trials = load(pg_url, name).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # each job reported its evaluations to the database itself (for pruning): 2 evaluation periods
    assert all(sorted(t.intermediate_values) == [0, 1] for t in trials)
    assert sorted(trial_ids_run(sweep)) == sorted(t._trial_id for t in trials)
    # the jobs got the password from their environment: none of what they record holds it
    password = pg_url.split("@")[0].rsplit(":", 1)[1]
    for job_dir in (sweep / "0", sweep / "1"):
        recorded = (job_dir / "result.json").read_text() + (job_dir / ".hydra" / "overrides.yaml").read_text()
        assert "lab:***@127.0.0.1" in recorded and f":{password}@" not in recorded


def test_optuna_dashboard_opens_a_study_in_postgresql(pg_url):
    name = f"dashboard-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=open_storage(pg_url))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    proc = subprocess.Popen([str(dashboard), pg_url, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def get(path: str) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return json.loads(r.read())

        body = None
        deadline = time.time() + 60
        while body is None and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            try:
                body = get("/api/studies")
            except OSError:
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer within 60 s"
        (ours,) = [s for s in body["study_summaries"] if s["study_name"] == name]
        trials = get(f"/api/studies/{ours['study_id']}?after=0")["trials"]
        assert [(t["state"], t["values"]) for t in trials] == [("Complete", [0.5])]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_wrong_password_is_a_clear_error_before_anything_is_submitted(tmp_path, pg_url):
    wrong = pg_url.replace(":lab@", ":not-the-password@")
    proc = lab([*TINY_RL, *study_args(wrong, "never", 2, tmp_path / "sweep"), "hydra/launcher=slurm"],
               tmp_path / "logs")
    assert proc.returncode == 2
    (message,) = [line for line in proc.stderr.splitlines() if line.strip()]  # one paragraph, no traceback
    assert message.startswith("error: hydra.sweeper.storage='postgresql+psycopg://lab:***@127.0.0.1")
    assert "password authentication failed" in message and "not-the-password" not in message
    assert not (tmp_path / "sweep").exists()
