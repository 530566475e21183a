"""mode=predict end to end through run(cfg): a trained classifier on a folder of PNGs, a trained conditional GAN's
samples, a trained PPO agent's episodes, and bad input that fails before the run folder exists."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import build, make_cfg
from lab.errors import ConfigError
from lab.modes.base import load_weights
from lab.run import run


@pytest.fixture(scope="module")
def cnn_ckpt(tmp_path_factory, data_dir) -> Path:
    """A few-batch cnn_mnist checkpoint on the synthetic data."""
    tmp = tmp_path_factory.mktemp("cnn")
    cfg = make_cfg(["experiment=cnn_mnist", "test=false"], tmp, data_dir)
    run(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_classifier_predicts_a_png_folder_with_its_own_preprocessing(cnn_ckpt, tmp_path, data_dir):
    from torchvision.datasets import MNIST

    test = MNIST(str(data_dir), train=False)
    folder = tmp_path / "pngs"
    for i in range(20):
        path = folder / f"digit{i % 2}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.data[i].numpy()).save(path)
    cfg = make_cfg(["experiment=cnn_mnist", "mode=predict", f"ckpt_path={cnn_ckpt}", f"predict.input={folder}",
                    "predict.batch_size=8"], tmp_path, data_dir)
    metrics = run(cfg)
    table = rows(Path(cfg.paths.output_dir) / "predictions.csv")
    assert len(table) == 20 and metrics["predict/count"] == 20
    # the same answers as the trained weights on the data module's own test tensors
    reference = build(make_cfg(["experiment=cnn_mnist", "mode=predict"], tmp_path / "ref", data_dir))
    model = load_weights(reference.model, cnn_ckpt, "predict")
    reference.datamodule.setup("test")
    x = torch.stack([reference.datamodule.test_set[i][0] for i in range(20)])
    with torch.no_grad():
        probs = torch.softmax(model(x), -1)
    for r in table:
        i = int(Path(r["path"]).stem)
        got = torch.tensor([float(r[str(c)]) for c in range(10)])
        assert torch.allclose(got, probs[i], atol=1e-4) and r["class"] == str(int(probs[i].argmax()))
    assert metrics["predict/mean_confidence"] == pytest.approx(float(probs.max(-1).values.mean()), abs=1e-4)


def test_a_wrong_size_image_fails_before_the_run_folder_exists(cnn_ckpt, tmp_path, data_dir):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    cfg = make_cfg(["experiment=cnn_mnist", "mode=predict", f"ckpt_path={cnn_ckpt}",
                    f"predict.input={tmp_path / 'big.png'}"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"not 28x28 pixels: big.png \(32x32\)"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_seq2seq_is_refused_naming_the_families_predict_applies_to(cnn_ckpt, tmp_path, data_dir):
    cfg = make_cfg(["experiment=seq2seq_reverse", "mode=predict", f"ckpt_path={cnn_ckpt}"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"mode=predict applies to classifiers .* generative models .* RL agents"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_a_conditional_gan_samples_a_grid_and_one_file_per_image(tmp_path, data_dir):
    shrink = ["model.quality_dataset=null", "trainer.limit_val_batches=1"]  # no FID: checkpoints by train/g_loss
    train = make_cfg(["experiment=cgan_mnist", *shrink, "test=false"], tmp_path / "train", data_dir)
    run(train)
    ckpt = Path(train.paths.output_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    cfg = make_cfg(["experiment=cgan_mnist", *shrink, "mode=predict", f"ckpt_path={ckpt}", "predict.num_samples=20",
                    f"predict.output={out}"], tmp_path, data_dir)
    metrics = run(cfg)
    files = sorted(out.glob("sample_*.png"))
    assert len(files) == 20 and metrics["predict/count"] == 20
    assert [f.name for f in files[9:11]] == ["sample_0009_0.png", "sample_0010_1.png"]  # a row per class
    assert Image.open(out / "grid.png").size == (2 * (10 * 30 + 2), 2 * (2 * 30 + 2))
    pixels = np.asarray(Image.open(files[0]))
    assert pixels.shape == (28, 28) and pixels.std() > 0  # a grey image, not a blank one


def test_an_rl_agent_plays_episodes_with_a_video(tmp_path):
    common = ["logger=csv", "trainer.accelerator=cpu", "trainer.enable_model_summary=false",
              "~callbacks.model_summary", "agent.total_timesteps=256", "agent.eval_freq=128", "agent.eval_episodes=2",
              "agent.log_interval=64", "env.max_episode_steps=60", "callbacks.progress_bar.plain=true",
              "env.num_envs=2", "agent.num_steps=32", "agent.batch_size=32", "agent.update_epochs=2"]
    train = make_cfg(["experiment=ppo_cartpole", *common, "agent.video=false"], tmp_path / "train", None, smoke=False)
    run(train)
    ckpt = Path(train.paths.output_dir) / "checkpoints" / "last.ckpt"
    cfg = make_cfg(["experiment=ppo_cartpole", *common, "agent.video=true", "mode=predict", f"ckpt_path={ckpt}",
                    "predict.episodes=3"], tmp_path, None, smoke=False)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    table = rows(out / "episodes.csv")
    assert [r["episode"] for r in table] == ["0", "1", "2"]
    for r in table:  # CartPole pays 1 a step, and episodes stop at env.max_episode_steps
        assert float(r["return"]) == int(r["length"]) and 1 <= int(r["length"]) <= 60
    assert metrics["predict/return_mean"] == pytest.approx(np.mean([float(r["return"]) for r in table]))
    assert metrics["predict/count"] == 3
    assert list((out / "videos").glob("*.mp4"))


def test_a_regressor_reads_features_by_name_with_its_training_statistics(tmp_path):
    from sklearn.datasets import load_diabetes

    shrink = ["logger=csv", "trainer.accelerator=cpu", "trainer.max_epochs=2", "trainer.enable_model_summary=false",
              "~callbacks.model_summary", "callbacks.progress_bar.plain=true"]
    train = make_cfg(["experiment=regress_diabetes", *shrink, "test=false"], tmp_path / "train", None, smoke=False)
    run(train)
    ckpt = Path(train.paths.output_dir) / "checkpoints" / "last.ckpt"
    table = load_diabetes(as_frame=True, scaled=False).frame.iloc[:30]
    columns = ["target", *reversed(table.columns[:-1])]  # features in another order, the target among them
    table[columns].to_csv(tmp_path / "named.csv", index=False)
    np.save(tmp_path / "rows.npy", table.iloc[:, :-1].to_numpy())  # headerless: the training order
    results = {}
    for name in ("named.csv", "rows.npy"):
        cfg = make_cfg(["experiment=regress_diabetes", *shrink, "mode=predict", f"ckpt_path={ckpt}",
                        f"predict.input={tmp_path / name}", f"predict.output={tmp_path / name}.predictions.csv"],
                       tmp_path / name.split(".")[0], None, smoke=False)
        run(cfg)
        results[name] = rows(tmp_path / f"{name}.predictions.csv")
    assert list(results["named.csv"][0]) == ["row", "target"] and len(results["named.csv"]) == 30
    assert results["named.csv"] == results["rows.npy"]
    # the trained weights on the data module's own standardization (its training rows' statistics)
    reference = build(make_cfg(["experiment=regress_diabetes", "mode=predict"], tmp_path / "ref", None, smoke=False))
    model = load_weights(reference.model, ckpt, "predict")
    with torch.no_grad():
        expected = model(reference.datamodule.preprocess(table.iloc[:, :-1].to_numpy()))[:, 0]
    got = torch.tensor([float(r["target"]) for r in results["named.csv"]])
    assert torch.allclose(got, expected, rtol=1e-5)
