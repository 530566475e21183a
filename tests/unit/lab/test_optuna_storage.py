"""Optuna storages and workers without a database server: URL checks, the journal file, stale trials of dead
workers, and two workers asking for the last place of a study."""

import time

import optuna
import pytest

from hydra_plugins.lab_optuna_sweeper import HEARTBEAT, Heartbeat, OptunaSweeper, fail_stale_trials
from lab.optuna_trials import StorageError, open_storage

X = {"x": optuna.distributions.FloatDistribution(0, 1)}


@pytest.mark.parametrize(("url", "says"), [
    ("nonsense", "is not a storage URL; valid forms: sqlite:///<file>.db; postgresql+psycopg://"),
    ("postgresql+nodriver://u:pw@127.0.0.1/db", "no database driver for it"),
    ("postgresql+psycopg://u:hunter2@127.0.0.1:1/db", "the database cannot be reached"),
    ("journal://", "names no journal file"),
])
def test_bad_storage_urls_are_one_paragraph_errors_without_the_password(url, says):
    with pytest.raises(StorageError) as e:
        open_storage(url)
    assert says in str(e.value) and "\n" not in str(e.value) and "hunter2" not in str(e.value)


def test_journal_file_storage_is_shared_by_two_handles(tmp_path):
    url = f"journal://{tmp_path}/deep/study.log"  # its folder is made
    one = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    one.tell(one.ask(X), 0.25)
    two = optuna.load_study(study_name="s", storage=open_storage(url))  # another worker's view
    two.tell(two.ask(X), 0.75)
    assert [t.value for t in optuna.load_study(study_name="s", storage=open_storage(url)).trials] == [0.25, 0.75]


def test_stale_trials_of_dead_workers_are_failed_and_live_ones_kept(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/s.db"))
    alive, dead, _silent = study.ask(X), study.ask(X), study.ask(X)
    study._storage.set_trial_system_attr(alive._trial_id, HEARTBEAT, time.time())
    study._storage.set_trial_system_attr(dead._trial_id, HEARTBEAT, time.time() - 100)
    # `silent` has no heartbeat at all: it counts from its start, which is recent
    assert fail_stale_trials(study, grace_period=10) == [dead.number]
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING]
    assert fail_stale_trials(study, grace_period=10) == []  # failed once


def test_a_heartbeat_keeps_stamping_its_trials(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/s.db"))
    trial = study.ask(X)
    beat = Heartbeat(study, interval=0.2)
    try:
        beat.add(trial)
        first = study.trials[0].system_attrs[HEARTBEAT]
        time.sleep(0.7)
        assert study.trials[0].system_attrs[HEARTBEAT] > first
        assert fail_stale_trials(study, grace_period=0.5) == []
    finally:
        beat.close()


def sweeper(n_trials: int, n_jobs: int) -> OptunaSweeper:
    return OptunaSweeper(study_name="s", storage=None, direction="min", n_trials=n_trials, n_jobs=n_jobs, sampler={},
                         pruner=None, params=None, seeds=None, heartbeat_interval=1, grace_period=5)


def test_a_worker_asks_only_for_the_places_other_workers_left():
    study = optuna.create_study()
    study.tell(study.ask(X), 1.0)
    other = study.ask(X)  # another worker's trial, running
    beat = Heartbeat(study, interval=60)
    try:
        assert len(sweeper(n_trials=4, n_jobs=8)._ask(study, X, beat)) == 2
        assert sweeper(n_trials=4, n_jobs=8)._ask(study, X, beat) == []  # all 4 places taken
    finally:
        beat.close()
    assert other.number == 1


def test_two_workers_asking_for_the_last_place_at_once_run_one_trial():
    study = optuna.create_study()
    study.tell(study.ask(X), 1.0)
    ask = study.ask

    def raced(*args, **kwargs):  # the other worker asks between this worker's count and its own ask
        ask(X)
        return ask(*args, **kwargs)

    study.ask = raced
    beat = Heartbeat(study, interval=60)
    try:
        assert sweeper(n_trials=2, n_jobs=1)._ask(study, X, beat) == []
    finally:
        beat.close()
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL]
    assert study.trials[2].system_attrs["lab:surplus"] is True


def test_heartbeat_settings_are_checked():
    with pytest.raises(ValueError, match="need 0 < heartbeat_interval < grace_period"):
        OptunaSweeper(study_name="s", storage=None, direction="min", n_trials=1, n_jobs=1, sampler={}, pruner=None,
                      params=None, seeds=None, heartbeat_interval=10, grace_period=5)


def test_workers_sharing_a_sweep_folder_get_job_numbers_of_their_own(tmp_path):
    from hydra_plugins.lab_optuna_sweeper import reserve_job_numbers

    (tmp_path / "0").mkdir()  # an earlier job's folder, kept
    assert reserve_job_numbers(tmp_path, 2) == 1  # this worker: 1 and 2
    (tmp_path / "4").mkdir()  # another worker's
    assert reserve_job_numbers(tmp_path, 2) == 5  # numbers after every existing one
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == [0, 1, 2, 4, 5, 6]


def test_a_number_taken_meanwhile_moves_the_block_past_it(tmp_path, monkeypatch):
    from pathlib import Path

    from hydra_plugins.lab_optuna_sweeper import reserve_job_numbers

    mkdir = Path.mkdir

    def racing(self, *args, **kwargs):  # another worker takes 1 just before this one does
        if self == tmp_path / "1" and not self.exists():
            mkdir(self)
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing)
    assert reserve_job_numbers(tmp_path, 2) == 2  # 0 made, 1 lost to the other worker: 2 and 3 instead


def test_a_trial_another_worker_failed_is_left_failed(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus

    study = optuna.create_study()
    trial = study.ask(X)
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # by another worker: no heartbeat for too long
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.5
    sweeper(n_trials=1, n_jobs=1)._tell(study, [trial], [done])  # no "cannot tell a finished trial" crash
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
