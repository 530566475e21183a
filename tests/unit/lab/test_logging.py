"""The W&B logger waits for a run id still held by a killed process's W&B service."""

import pytest
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

import lab.logging as lab_logging


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
