"""Every supervised experiment end to end through run(cfg), shrunk to a few batches on synthetic data."""

import math
from pathlib import Path

import pytest

from helpers import experiments_with, make_cfg
from lab.errors import ConfigError
from lab.models import Classifier
from lab.run import run
from lab.validate import group_options

# the classifiers; transfer_fashion starts from a trained source: tests/smoke/test_lifecycle.py
EXPERIMENTS = [e for e in experiments_with("model", Classifier) if e != "transfer_fashion"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_end_to_end(experiment, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={experiment}"], tmp_path, data_dir)
    metrics = run(cfg)
    for key in ("train/loss", "val/loss", "val/acc", "test/acc", "test/f1"):
        assert key in metrics and math.isfinite(metrics[key]), key
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "test_confusion_matrix.png").stat().st_size > 0
    assert (out / "csv" / "version_0" / "metrics.csv").is_file()


def test_eval_mode_reproduces_the_test_metrics_of_the_checkpoint(tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", "trainer.limit_test_batches=null"], tmp_path, data_dir)
    trained = run(cfg)
    best = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    cfg_eval = make_cfg(["experiment=mlp_mnist", "mode=eval", f"ckpt_path={best}", "trainer.limit_test_batches=null"],
                        tmp_path / "eval", data_dir)
    evaluated = run(cfg_eval)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"])
    assert "train/loss" not in evaluated


def test_eval_with_a_checkpoint_of_another_model_is_a_clear_error(tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", "test=false"], tmp_path, data_dir)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    bad = make_cfg(["experiment=cnn_mnist", "mode=eval", f"ckpt_path={ckpt}"], tmp_path / "eval", data_dir)
    with pytest.raises(ConfigError, match="does not match the configured model"):
        run(bad)
    assert ckpt.is_file()


def test_resume_continues_from_last_checkpoint_in_the_same_run(tmp_path, data_dir):
    # a one-cycle schedule is fixed by the run length, so extend a run with a constant learning rate
    first = make_cfg(["experiment=mlp_mnist", "test=false", "model.scheduler=null"], tmp_path, data_dir)
    run(first)
    run_dir = Path(first.paths.output_dir)
    second = make_cfg(["experiment=mlp_mnist", "resume=true", "trainer.max_epochs=2", "test=false",
                       "model.scheduler=null"],
                      tmp_path, data_dir)
    second.paths.output_dir = str(run_dir.parent / "new_run")
    run(second)
    import torch

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6  # 3 batches per epoch, two epochs in all
    # the first run's CSV log is kept; the continuation writes a new version beside it
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()
    assert (run_dir / "csv" / "version_1" / "metrics.csv").is_file()


def test_resume_continues_the_latest_run_of_the_same_configuration(tmp_path, data_dir):
    def cfg(lr: float, name: str | None, *extra: str):
        c = make_cfg(["experiment=mlp_mnist", "test=false", "model.scheduler=null", f"model.optimizer.lr={lr}", *extra],
                     tmp_path, data_dir)
        if name:
            c.paths.output_dir = str(tmp_path / "logs" / "mlp_mnist" / "runs" / name)
        return c

    run(cfg(1e-3, "a"))
    run(cfg(5e-3, "b"))  # newer, with another learning rate
    resumed = cfg(1e-3, "c", "resume=true", "trainer.max_epochs=2")
    run(resumed)
    assert resumed.paths.output_dir.endswith("runs/a")  # not the newest run, b
    import torch

    assert torch.load(tmp_path / "logs/mlp_mnist/runs/a/checkpoints/last.ckpt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "logs/mlp_mnist/runs/c").exists()
    with pytest.raises(ConfigError, match=r"no earlier run .* has this configuration.*runs/b/checkpoints/last.ckpt "
                                          r"\(differs in model.optimizer.lr=0.005\).*resume=true ckpt_path="):
        run(cfg(7e-3, "d", "resume=true"))


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_a_file_that_is_not_a_lab_checkpoint_is_named(content, tmp_path, data_dir):
    import torch

    bad = tmp_path / "bad.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, bad)  # a PyTorch file, but no Lightning checkpoint
    else:
        bad.write_bytes(content)
    with pytest.raises(ConfigError, match=f"Invalid ckpt_path='{bad}': it (cannot be read|is not a Lightning)"):
        run(make_cfg(["experiment=mlp_mnist", "mode=eval", f"ckpt_path={bad}"], tmp_path, data_dir))


def test_resume_without_an_earlier_run_is_a_clear_error(tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", "resume=true"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        run(cfg)


def test_same_seed_same_metrics(tmp_path, data_dir):
    a = run(make_cfg(["experiment=cnn_mnist", "seed=3"], tmp_path / "a", data_dir))
    b = run(make_cfg(["experiment=cnn_mnist", "seed=3"], tmp_path / "b", data_dir))
    c = run(make_cfg(["experiment=cnn_mnist", "seed=4"], tmp_path / "c", data_dir))
    assert a == b
    assert a["train/loss"] != c["train/loss"]


@pytest.mark.parametrize("scheduler", group_options("model/scheduler"))
def test_every_scheduler_trains(scheduler, tmp_path, data_dir):
    metrics = run(make_cfg(["experiment=mlp_mnist", f"model/scheduler={scheduler}", "trainer.max_epochs=2",
                            "test=false"], tmp_path, data_dir))
    assert math.isfinite(metrics["train/loss"])


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model.backbone.in_features=100"], "does not fit the data.*backbone.in_features=100"),
        (["experiment=transformer_seqmnist", "model.backbone.d_model=30"], "backbone.d_model=30.*backbone.nhead=4"),
        (["experiment=lstm_seqmnist", "model.backbone.hidden_size=0"], "backbone.hidden_size=0"),
        (["experiment=mlp_mnist", "model.backbone.hidden_sizes=[64,0]"], "backbone.hidden_sizes"),
        (["data=seq_mnist", "model.backbone.in_features=28"], "does not fit"),
        (["experiment=cnn_mnist", "model/backbone=mlp"], "unexpected keyword argument 'conv_dropout'.*`~key`"),
    ],
)
def test_models_that_do_not_fit_fail_before_training(overrides, match, tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", *overrides], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
