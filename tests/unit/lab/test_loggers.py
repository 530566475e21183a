"""The W&B logger waits for a run id still held by a killed process's W&B service."""

import pytest
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

import lab.loggers as lab_logging


def test_wandb_logger_retries_while_the_run_id_is_in_use(monkeypatch, tmp_path):
    calls = []

    def flaky(self):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("run ID abc123 is in use")
        return "the run"

    monkeypatch.setattr(LightningWandbLogger, "experiment", property(flaky))
    monkeypatch.setattr(lab_logging.time, "sleep", lambda s: None)
    logger = lab_logging.WandbLogger(save_dir=str(tmp_path), id="abc123", offline=True)
    assert logger.experiment == "the run" and len(calls) == 3


def test_wandb_logger_does_not_retry_other_errors(monkeypatch, tmp_path):
    def broken(self):
        raise RuntimeError("something else")

    monkeypatch.setattr(LightningWandbLogger, "experiment", property(broken))
    with pytest.raises(RuntimeError, match="something else"):
        _ = lab_logging.WandbLogger(save_dir=str(tmp_path), offline=True).experiment


def test_history_gaps_are_the_checkpointed_values_wandb_lost():
    rows = [
        {"step": 9, "epoch": 0, "train/loss": 1.0},
        {"step": 9, "epoch": 0, "val/acc": 0.5},
        {"step": 9, "lr-Adam": 0.1},                      # no epoch, step within epoch 0
        {"step": 19, "epoch": 1, "train/loss": 0.8},
        {"step": 19, "epoch": 1, "val/acc": 0.6},
        {"step": 20, "lr-Adam": 0.05},                    # no epoch, after the last checkpointed step
        {"step": 29, "epoch": 2, "train/loss": 0.7},      # the epoch the kill cut short: redone on resume
    ]
    logged = {(9, "train/loss"), (9, "epoch"), (19, "train/loss"), (19, "epoch")}
    gaps = lab_logging.history_gaps(rows, logged, before_epoch=2)
    assert gaps == {9: {"val/acc": 0.5, "epoch": 0, "lr-Adam": 0.1}, 19: {"val/acc": 0.6, "epoch": 1}}
    everything = {(r["step"], k) for r in rows for k in r if k != "step"}
    assert lab_logging.history_gaps(rows, everything, before_epoch=2) == {}
    assert lab_logging.history_gaps(rows, logged, before_epoch=0) == {}


def test_csv_history_and_wandb_steps_read_back(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    csv_logger = CSVLogger(tmp_path, name="csv")
    csv_logger.log_metrics({"train/loss": 0.5, "epoch": 0}, step=3)
    csv_logger.log_metrics({"val/acc": 0.9, "epoch": 0}, step=3)
    csv_logger.save()
    rows = lab_logging.read_csv_history([tmp_path / "csv" / "version_0", tmp_path / "csv" / "version_9"])
    assert rows == [{"epoch": 0.0, "step": 3.0, "train/loss": 0.5}, {"epoch": 0.0, "step": 3.0, "val/acc": 0.9}]
    records = [{"type": "history", "history": {"item": {"trainer/global_step": 3, "val/acc": 0.9, "_step": 0}}},
               {"type": "summary", "summary": {}}]
    assert lab_logging.wandb_logged(records) == {(3, "trainer/global_step"), (3, "val/acc")}


def test_online_runs_compare_with_the_servers_history(monkeypatch):
    import wandb

    class Run:  # what wandb.Api().run(path) gives: rows of the server's history
        def scan_history(self):
            return iter([{"trainer/global_step": 5, "train/loss": 0.1, "_step": 0}])

    paths = []
    monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"run": lambda self, p: paths.append(p) or Run()})())
    run = type("R", (), {"entity": "me", "project": "lab", "id": "abc"})()
    assert lab_logging._server_logged(run) == {(5, "trainer/global_step"), (5, "train/loss")}
    assert paths == ["me/lab/abc"]

    def offline_api():
        raise ConnectionError("no network")

    monkeypatch.setattr(wandb, "Api", offline_api)
    assert lab_logging._server_logged(run) is None  # the caller falls back to the local logs
