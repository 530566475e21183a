"""Regression end to end through run(cfg): regress_diabetes shrunk (checkpointing, early stopping, evaluation
of its checkpoint) and the path a researcher with their own CSV takes; clear errors before anything is written."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import SMOKE, build, make_cfg
from lab.errors import ConfigError
from lab.run import run

TRAINER = [o for o in SMOKE if not o.startswith(("data.", "trainer.limit_"))]  # a table has no MNIST-file keys


def write_table(path: Path, n: int = 200, seed: int = 0) -> Path:
    """price = 3 rooms - 2 age + 100 and upkeep = rooms + 0.5 garden, exactly; `note` is text (not a feature)."""
    rng = np.random.default_rng(seed)
    rooms, age, garden = rng.uniform(0, 10, (3, n))
    pd.DataFrame({"rooms": rooms, "age": age, "garden": garden, "note": ["x"] * n, "price": 3 * rooms - 2 * age + 100,
                  "upkeep": rooms + 0.5 * garden}).to_csv(path, index=False)
    return path


def csv_cfg(path: Path, tmp_path: Path, *overrides: str):
    return make_cfg([*TRAINER, "model=regressor", "data=tabular", f"data.path={path}", "data.target=[price,upkeep]",
                     "data.features=[rooms,age,garden]", "model.num_targets=2", "model.backbone.in_features=3",
                     *overrides], tmp_path, None, smoke=False)


def test_regress_diabetes_shrunk_checkpoints_and_evaluates(tmp_path):
    cfg = make_cfg(["experiment=regress_diabetes", "trainer.max_epochs=2", "trainer.limit_train_batches=null",
                    "trainer.limit_val_batches=null", "trainer.limit_test_batches=null"], tmp_path / "fit", None)
    metrics = run(cfg)
    for key in ("train/loss", "val/loss", "val/mae", "val/rmse", "val/r2", "test/mae", "test/rmse", "test/r2"):
        assert np.isfinite(metrics[key]), key
    assert metrics["test/rmse"] >= metrics["test/mae"] > 0  # RMSE >= MAE always
    assert metrics["test/mae"] < 150  # the target runs 25-346: errors in its units, not standardized ones
    out = Path(cfg.paths.output_dir)
    best = [p for p in (out / "checkpoints").glob("epoch_*.ckpt")]
    assert len(best) == 1 and (out / "checkpoints" / "last.ckpt").is_file()  # monitored val/r2 (max)
    ckpt = torch.load(best[0], map_location="cpu", weights_only=True)
    data_state = ckpt["TabularDataModule"]  # the training rows' statistics travel with the checkpoint
    assert data_state["feature_names"][:3] == ["age", "sex", "bmi"] and data_state["target_names"] == ["target"]
    assert ckpt["state_dict"]["target_mean"].item() == pytest.approx(data_state["target_mean"][0])
    assert ckpt["hyper_parameters"]["target_names"] == ["target"]
    # mode=eval of that checkpoint: the same test figures
    again = run(make_cfg(["experiment=regress_diabetes", "mode=eval", f"ckpt_path={best[0]}",
                          "trainer.limit_test_batches=null"], tmp_path / "eval", None))
    assert again["test/r2"] == pytest.approx(metrics["test/r2"], abs=1e-5)


def test_a_users_csv_with_two_targets_is_learnt_in_its_own_units(tmp_path):
    path = write_table(tmp_path / "houses.csv")
    cfg = csv_cfg(path, tmp_path, "model.backbone.hidden_sizes=[]", "model.optimizer.lr=0.05",
                  "model.optimizer.weight_decay=0", "data.batch_size=8", "trainer.max_epochs=12")
    metrics = run(cfg)
    assert cfg.optimized_metric == "val/r2" and cfg.optimized_mode == "max"  # a regressor's, without an experiment
    assert metrics["test/r2"] > 0.99  # both targets are linear in the features
    # as a predict mode does: the model rebuilt from the config, the checkpoint's weights, the data's preprocess
    runner = build(csv_cfg(path, tmp_path / "again", "model.backbone.hidden_sizes=[]"))
    best = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    model = runner.model.eval()
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    rows = np.array([[5.0, 5.0, 2.0], [1.0, 9.0, 8.0]])  # rooms, age, garden
    with torch.no_grad():
        pred = model(runner.datamodule.preprocess(rows))  # raw rows in, predictions in the targets' units
    assert torch.allclose(pred, torch.tensor([[105.0, 6.0], [85.0, 5.0]]), atol=1.5)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model.loss=mae"], r"model.loss='mae' is not valid; valid choices: mse, l1, huber"),
        (["data.target=[cost]"], r"data.target: 'cost' is not a column of .*houses.csv; its columns: rooms, age"),
        (["data.features=null"], r"column 'note' at data row 1 .*: 'x'"),
        (["model.num_targets=1"], r"model.num_targets=1 but the data has 2 target column\(s\) \(price, upkeep\)"),
        (["model.backbone.in_features=4"], r"inputs of shape \(3,\).*set model.backbone.in_features=3"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(overrides, match, tmp_path):
    cfg = csv_cfg(write_table(tmp_path / "houses.csv", n=60), tmp_path, *overrides)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()
