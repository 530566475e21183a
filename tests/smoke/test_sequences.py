"""The sequence chapters end to end through run(cfg), shrunk: seq2seq tasks (RNN with attention, the
Transformer) and per-class HMMs on row-by-row MNIST (synthetic data)."""

import math
from pathlib import Path

import pytest
from PIL import Image

from helpers import experiments_with, make_cfg
from lab.errors import ConfigError
from lab.models import Seq2Seq
from lab.run import run

SEQ2SEQ = experiments_with("model", Seq2Seq)


@pytest.mark.parametrize("experiment", SEQ2SEQ)
def test_seq2seq_experiment(experiment, tmp_path):
    extra = ["data.min_len=5", "data.max_len=12", "data.length_buckets=[[5,8],[9,12]]",
             "model.beam_size=2"] if experiment == "seq2seq_reverse" else []
    cfg = make_cfg([f"experiment={experiment}", *extra], tmp_path, None)
    metrics = run(cfg)
    keys = ["train/loss", "val/loss", "val/seq_acc", "val/token_acc", "test/loss", "test/seq_acc", "test/token_acc"]
    if experiment == "seq2seq_reverse":
        keys += ["test/seq_acc_len5-8", "test/seq_acc_len9-12"]
    for key in keys:
        assert key in metrics and math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["test/seq_acc"] <= metrics["test/token_acc"] <= 1.0
    heat_map = Path(cfg.paths.output_dir) / "media" / "attention_epoch000.png"
    assert Image.open(heat_map).size[0] > 400  # two heat maps side by side
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_seq2seq_without_attention_runs_and_draws_no_heat_map(tmp_path):
    cfg = make_cfg(["experiment=seq2seq_reverse", "model.net.attention=none", "model.net.cell=lstm"], tmp_path, None)
    assert math.isfinite(run(cfg)["test/seq_acc"])
    assert not list((Path(cfg.paths.output_dir) / "media").glob("attention_*.png"))


@pytest.mark.parametrize("emission", ["gaussian", "bernoulli"])
def test_hmm_seqmnist(emission, tmp_path, data_dir):
    cfg = make_cfg(["experiment=hmm_seqmnist", "model.num_states=4", f"model.emission={emission}"], tmp_path, data_dir)
    metrics = run(cfg)
    for key in ("train/loglik", "val/loglik", "val/acc", "test/loglik", "test/acc"):
        assert key in metrics and math.isfinite(metrics[key]), key
    grid = Image.open(Path(cfg.paths.output_dir) / "media" / "samples_epoch000.png")
    assert grid.size == (2 * (10 * 30 + 2),) * 2  # 10 classes x 10 samples of 28 x 28 rows, at 2x


@pytest.mark.parametrize("overrides, match", [
    (["experiment=seq2seq_reverse", "model.net.attention=luong"],
     "model.net.attention='luong' is not valid; valid choices: none, additive, dot, general"),
    (["experiment=seq2seq_dates", "model.beam_size=0"], "model.beam_size=0 must be an integer >= 1"),
    (["experiment=seq2seq_reverse", "data.min_len=12", "data.max_len=4"],
     "data.min_len=12 is greater than data.max_len=4"),
    (["experiment=hmm_seqmnist", "model.num_states=0"], "model.num_states=0 is not valid"),
    (["experiment=transformer_dates", "model.teacher_forcing=0.5"], "model.teacher_forcing=1.0"),
])
def test_bad_sequence_keys_fail_before_training(overrides, match, tmp_path, data_dir):
    cfg = make_cfg(overrides, tmp_path, data_dir)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
