"""Model-lifecycle chapters end to end through run(cfg): transfer learning, multi-task learning, RBM / DBN."""

import logging
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from lab.errors import ConfigError
from lab.instantiate import instantiate
from lab.run import run


def _state(run_dir: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=False)["state_dict"]


def test_transfer_fashion_without_a_source_run_says_what_to_train_first(tmp_path, data_dir):
    cfg = make_cfg(["experiment=transfer_fashion", "data.labels_per_class=20"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"model.init_from=.*cnn_mnist.*does not exist"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()  # nothing written


def test_transfer_fashion_linear_probe_keeps_the_mnist_backbone_exactly(tmp_path, data_dir, caplog):
    source_cfg = make_cfg(["experiment=cnn_mnist", "test=false"], tmp_path, data_dir)
    run(source_cfg)
    source = _state(Path(source_cfg.paths.output_dir))
    cfg = make_cfg(["experiment=transfer_fashion", "data.labels_per_class=20", "model.freeze=[backbone]"],
                   tmp_path, data_dir)
    with caplog.at_level(logging.INFO, logger="lab"):
        metrics = run(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "val/acc" in metrics
    assert "loaded" in caplog.text and "backbone.features" in caplog.text
    tuned = _state(Path(cfg.paths.output_dir))
    backbone = [k for k in source if k.startswith("backbone.")]
    assert backbone and all(torch.equal(tuned[k], source[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(tuned["head.weight"], source["head.weight"])  # a new head, trained


def test_transfer_fashion_fine_tuning_moves_the_backbone_from_its_start(tmp_path, data_dir):
    source_cfg = make_cfg(["experiment=cnn_mnist", "test=false"], tmp_path, data_dir)
    run(source_cfg)
    source = _state(Path(source_cfg.paths.output_dir))
    cfg = make_cfg(["experiment=transfer_fashion", "data.labels_per_class=20", "test=false",
                    "model.pretrained_lr_scale=0.1"], tmp_path, data_dir)
    run(cfg)
    tuned = _state(Path(cfg.paths.output_dir))
    w = "backbone.features.0.weight"
    change = (tuned[w] - source[w]).abs().max().item()
    assert 0 < change < (source[w].abs().max().item())  # moved a little from the MNIST weights


def test_rbm_mnist_logs_its_figures_and_grids(tmp_path, data_dir):
    cfg = make_cfg(["experiment=rbm_mnist", "model.hidden=32", "model.sample_steps=5", "model.persistent=true"],
                   tmp_path, data_dir)
    metrics = run(cfg)
    for split in ("val", "test"):
        assert metrics[f"{split}/pll"] < 0 and 0 < metrics[f"{split}/recon_error"] < 1
    media = Path(cfg.paths.output_dir) / "media"
    assert (media / "filters_epoch000.png").is_file() and (media / "samples_epoch000.png").is_file()
    state = _state(Path(cfg.paths.output_dir))
    assert bool(state["biases_from_data"])
    dm = instantiate(cfg.data, "data")
    dm.setup("fit")
    mean = torch.stack([x for x, _ in dm.train_set]).flatten(1).mean(0).clamp(1e-3, 1 - 1e-3)
    # started at the logits of the training pixels' means, then 3 small CD steps
    assert torch.allclose(state["rbm.b"], torch.log(mean / (1 - mean)), atol=0.2)
    assert state["rbm.b"].max() - state["rbm.b"].min() > 0.5


def test_dbn_mnist_pretrains_then_fine_tunes_and_stops_early_for_too_few_epochs(tmp_path, data_dir, capsys):
    cfg = make_cfg(["experiment=dbn_mnist", "model.hidden_sizes=[32,16]", "model.pretrain_epochs=1",
                    "trainer.max_epochs=3", "callbacks.progress_bar.plain=true"], tmp_path, data_dir)
    metrics = run(cfg)
    assert {"train/cd_loss", "train/loss", "val/acc", "test/acc"} <= set(metrics)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert "train/cd_loss=" in lines[0] and "train/loss=" not in lines[0]  # pretraining RBM 1
    assert "train/loss=" in lines[2] and "train/cd_loss=" not in lines[2]  # fine-tuning: no stale CD figures
    assert (Path(cfg.paths.output_dir) / "media" / "filters_epoch000.png").is_file()
    short = make_cfg(["experiment=dbn_mnist", "model.pretrain_epochs=1", "trainer.max_epochs=2"], tmp_path / "b",
                     data_dir)
    with pytest.raises(ConfigError, match="leaves no epoch for fine-tuning"):
        run(short)


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_multitask_mnist_fashion_logs_each_task_and_their_mean(weighting, tmp_path, data_dir):
    cfg = make_cfg(["experiment=multitask_mnist_fashion", f"model.weighting={weighting}"], tmp_path, data_dir)
    metrics = run(cfg)
    for split in ("val", "test"):
        accs = [metrics[f"{split}/{t}/acc"] for t in ("mnist", "fashion")]
        assert metrics[f"{split}/acc"] == pytest.approx(sum(accs) / 2)
    assert {"train/mnist/loss", "train/fashion/loss", "val/mnist/loss", "test/fashion/loss"} <= set(metrics)
    assert ("train/mnist/weight" in metrics) == (weighting == "uncertainty")


def test_multitask_with_one_task_left_is_the_single_task_baseline(tmp_path, data_dir):
    cfg = make_cfg(["experiment=multitask_mnist_fashion", "~data.tasks.fashion"], tmp_path, data_dir)
    metrics = run(cfg)
    assert "test/mnist/acc" in metrics and not any("fashion" in k for k in metrics)
    assert metrics["test/acc"] == pytest.approx(metrics["test/mnist/acc"])
    bad = make_cfg(["experiment=multitask_mnist_fashion", "model.loss_weights={digits: 2.0}"], tmp_path / "b",
                   data_dir)
    with pytest.raises(ConfigError, match=r"model.loss_weights names \['digits'\], which are not tasks; valid "
                                          r"choices: mnist, fashion"):
        run(bad)
