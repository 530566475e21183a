"""lab.data.TabularDataModule: scikit-learn's diabetes table and a user's CSV; fixed-seed and K-fold splits;
standardization fitted on the training rows only; clear errors for bad columns, cells and sizes."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes

from helpers import make_cfg
from lab.data import TabularDataModule
from lab.errors import ConfigError
from lab.instantiate import instantiate

DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def write_csv(path, n=60, seed=0, **extra):
    """a, b, c uniform in [0, 10]; y = 3a - 2b + 100; z = a + c; plus `extra` columns."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0, 10, (3, n))
    pd.DataFrame({"a": a, "b": b, "c": c, "y": 3 * a - 2 * b + 100, "z": a + c, **extra}).to_csv(path, index=False)
    return path


def test_diabetes_columns_shapes_and_split_sizes():
    dm = TabularDataModule("sklearn:diabetes", "target")
    assert dm.feature_names == DIABETES and dm.target_names == ["target"] and dm.input_shape == (10,)
    # 442 rows: test 0.2 -> 88, validation 0.15 -> 66, training the other 288; disjoint, covering the table
    assert (len(dm.train_idx), len(dm.val_idx), len(dm.test_idx)) == (288, 66, 88)
    assert torch.cat([dm.train_idx, dm.val_idx, dm.test_idx]).sort().values.equal(torch.arange(442))
    x, y = load_diabetes(return_X_y=True, scaled=False)  # features and target in their own units
    assert torch.allclose(dm.x, torch.tensor(x, dtype=torch.float32))
    assert torch.allclose(dm.y[:, 0], torch.tensor(y, dtype=torch.float32))
    dm.setup("fit")
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (32, 10) and yb.shape == (32, 1) and xb.dtype == yb.dtype == torch.float32


def test_standardization_is_fitted_on_the_training_rows_only():
    dm = TabularDataModule("sklearn:diabetes", "target")
    x, y = load_diabetes(return_X_y=True, scaled=False)
    train = x[dm.train_idx.numpy()]
    assert np.allclose(dm.feature_mean.numpy(), train.mean(0), rtol=1e-5)
    assert np.allclose(dm.feature_std.numpy(), train.std(0), rtol=1e-5)  # ddof 0, as StandardScaler
    assert not np.allclose(dm.feature_mean.numpy(), x.mean(0), rtol=1e-3)  # not the whole table's
    assert not np.allclose(dm.feature_std.numpy(), x.std(0), rtol=1e-3)
    assert np.isclose(dm.target_mean.item(), y[dm.train_idx.numpy()].mean(), rtol=1e-5)
    assert np.isclose(dm.target_std.item(), y[dm.train_idx.numpy()].std(), rtol=1e-5)
    dm.setup("fit")
    xs = dm.train_set.tensors[0]
    assert xs.mean(0).abs().max() < 1e-5 and (xs.std(0, unbiased=False) - 1).abs().max() < 1e-5
    assert torch.allclose(dm.val_set.tensors[0], dm.preprocess(x[dm.val_idx.numpy()]))
    assert torch.equal(dm.test_set.tensors[1][:, 0], dm.y[dm.test_idx, 0])  # targets stay in their own units


def test_preprocess_standardizes_raw_rows_with_the_training_statistics():
    dm = TabularDataModule("sklearn:diabetes", "target")
    row = dm.feature_mean + 2 * dm.feature_std  # two training stds above the training mean
    assert torch.allclose(dm.preprocess(row[None].numpy()), torch.full((1, 10), 2.0), atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(rows, 10\), the columns age, sex, bmi"):
        dm.preprocess(np.zeros((3, 9)))
    off = TabularDataModule("sklearn:diabetes", "target", standardize=False, standardize_targets=False)
    assert torch.equal(off.preprocess(np.ones((1, 10))), torch.ones(1, 10))
    assert off.target_mean.item() == 0 and off.target_std.item() == 1


def test_the_split_is_fixed_by_split_seed(tmp_path):
    a, b = TabularDataModule("sklearn:diabetes", "target"), TabularDataModule("sklearn:diabetes", "target")
    assert a.test_idx.equal(b.test_idx) and a.val_idx.equal(b.val_idx)
    c = TabularDataModule("sklearn:diabetes", "target", split_seed=1)
    assert not c.test_idx.equal(a.test_idx)
    counts = TabularDataModule("sklearn:diabetes", "target", val_size=40, test_size=100)
    assert (len(counts.val_idx), len(counts.test_idx), len(counts.train_idx)) == (40, 100, 302)


def test_k_folds_partition_the_rows_left_after_the_test_set():
    folds = [TabularDataModule("sklearn:diabetes", "target", folds=5, fold=k) for k in range(5)]
    test = folds[0].test_idx
    assert all(f.test_idx.equal(test) for f in folds)  # one test set for every fold
    vals = torch.cat([f.val_idx for f in folds])
    rest = torch.tensor(sorted(set(range(442)) - set(test.tolist())))
    assert vals.sort().values.equal(rest)  # each non-test row validates exactly once
    for f in folds:
        assert set(f.train_idx.tolist()) == set(rest.tolist()) - set(f.val_idx.tolist())
        assert np.allclose(f.feature_mean.numpy(), f.x[f.train_idx].double().mean(0).numpy(), rtol=1e-5)
    assert len(folds[0].val_idx) in (70, 71)  # 354 rows / 5


def test_a_users_csv_all_other_columns_or_chosen_features_and_several_targets(tmp_path):
    path = write_csv(tmp_path / "t.csv")
    dm = TabularDataModule(str(path), "y", val_size=10, test_size=10)
    assert dm.feature_names == ["a", "b", "c", "z"] and dm.target_names == ["y"] and dm.input_shape == (4,)
    two = TabularDataModule(str(path), ["y", "z"], features=["b", "a"], val_size=10, test_size=10)
    assert two.feature_names == ["b", "a"] and two.target_names == ["y", "z"] and two.num_targets == 2
    table = pd.read_csv(path)
    assert torch.allclose(two.x, torch.tensor(table[["b", "a"]].to_numpy(), dtype=torch.float32))
    assert two.target_mean.shape == (2,)
    cfg = make_cfg(["data=tabular", f"data.path={path}", "data.target=[y,z]", "data.features=[a,b,c]",
                    "data.val_size=10", "data.test_size=10"], tmp_path, None, smoke=False)
    built = instantiate(cfg.data, "data")  # the YAML's keys are the constructor's
    assert built.target_names == ["y", "z"] and built.feature_names == ["a", "b", "c"]


def test_the_diabetes_preset_composes(tmp_path):
    cfg = make_cfg(["data=diabetes"], tmp_path, None, smoke=False)
    dm = instantiate(cfg.data, "data")
    assert dm.path == "sklearn:diabetes" and dm.feature_names == DIABETES and cfg.data.folds is None


def test_state_dict_carries_the_training_statistics(tmp_path):
    dm = TabularDataModule("sklearn:diabetes", "target")
    dm.setup("fit")
    other = TabularDataModule("sklearn:diabetes", "target", split_seed=7)
    other.setup("fit")
    other.load_state_dict(dm.state_dict())  # evaluated with the statistics the checkpoint was trained with
    assert torch.equal(other.feature_mean, dm.feature_mean) and torch.equal(other.target_std, dm.target_std)
    raw = dm.x[other.val_idx].numpy()
    assert torch.allclose(other.val_set.tensors[0], dm.preprocess(raw))
    path = write_csv(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"trained on the feature columns \['age'"):
        TabularDataModule(str(path), "y", val_size=10, test_size=10).load_state_dict(dm.state_dict())


def test_non_numeric_cells_are_named_or_their_rows_dropped(tmp_path, caplog):
    path = write_csv(tmp_path / "t.csv", n=30, city=["x"] * 30)
    with pytest.raises(ValueError, match=r"column 'city' at data row 1 \(line 2 of a CSV file\): 'x'.*data.features"):
        TabularDataModule(str(path), "y", val_size=5, test_size=5, batch_size=8)
    chosen = TabularDataModule(str(path), "y", features=["a", "b"], val_size=5, test_size=5, batch_size=8)
    assert chosen.input_shape == (2,)  # the text column left out
    table = pd.read_csv(write_csv(tmp_path / "u.csv", n=30))
    table.loc[[3, 7], "b"] = np.nan
    table.to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(ValueError, match=r"2 row\(s\) have an empty.*column 'b' at data row 4 \(line 5"):
        TabularDataModule(str(tmp_path / "u.csv"), "y", val_size=5, test_size=5, batch_size=8)
    dropped = TabularDataModule(str(tmp_path / "u.csv"), "y", val_size=5, test_size=5, batch_size=8, verify=False)
    assert len(dropped.y) == 28 and "2 of 30 rows dropped" in caplog.text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(target="price"), r"data.target: 'price' is not a column of .*t.csv; its columns: a, b, c, y, z"),
        (dict(target="y", features=["a", "q"]), r"data.features: 'q' is not a column"),
        (dict(target="y", features=["a", "y"]), r"data.features lists the target column\(s\) y"),
        (dict(target=[]), r"data.target=\[\] is not valid: name the target column"),
        (dict(target="y", test_size=1.5), r"data.test_size=1.5 is not valid: it must be a number of rows"),
        (dict(target="y", val_size=0), r"data.val_size=0 is not valid"),
        (dict(target="y", val_size=30, test_size=29), r"leave 29 test, 30 validation and 1 training rows"),
        (dict(target="y", fold=2), r"data.fold=2 is set but data.folds is null"),
        (dict(target="y", folds=1), r"data.folds=1 is not valid"),
        (dict(target="y", folds=5, fold=5), r"data.fold=5 is not valid: with data.folds=5 .* from 0 to 4"),
        (dict(target="y", batch_size=64), r"data.batch_size=64 is larger than the training split, which has 36 rows"),
    ],
)
def test_bad_settings_name_the_key(kwargs, match, tmp_path):
    path = write_csv(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=match):
        TabularDataModule(str(path), **{"val_size": 12, "test_size": 12, **kwargs})


def test_bad_paths_fail_as_config_errors(tmp_path):
    for path, match in ((tmp_path / "none.csv", r"data.path=.*none.csv' is not a file; pass a CSV file"),
                        ("sklearn:iris", r"data.path='sklearn:iris' is not valid; valid choices: sklearn:diabetes")):
        cfg = make_cfg(["data=tabular", f"data.path={path}", "data.target=y"], tmp_path, None, smoke=False)
        with pytest.raises(ConfigError, match=match):
            instantiate(cfg.data, "data")
