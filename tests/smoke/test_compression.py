"""mode=prune and mode=export of trained classifiers, end to end through run(cfg), for every backbone."""

import csv
import logging
from pathlib import Path

import pytest
import torch

from helpers import build, make_cfg
from lab.compression.pruning import prunable, weight_sparsity
from lab.compression.quantization import onnx_predictor
from lab.errors import ConfigError
from lab.modes.base import load_weights
from lab.run import run

FAST = ["compress.latency_repeats=2"]  # mode=export: with compress.calibration_batches=2

# Every backbone of conf/model/backbone, as its experiment configures it (the deep ones shrunk: fewer blocks and
# layers, the same kinds of layer). LeNet has no experiment: cnn_mnist's backbone keys are the cnn's.
BACKBONES = {
    "mlp": ["experiment=mlp_mnist"],
    "cnn": ["experiment=cnn_mnist"],
    "lenet": ["model/backbone=lenet"],
    "resnet": ["experiment=resnet_fashion", "model.backbone.blocks=[1,1]"],
    "rnn": ["experiment=lstm_seqmnist", "model.backbone.cell=rnn"],
    "lstm": ["experiment=lstm_seqmnist"],
    "gru": ["experiment=gru_seqmnist"],
    "transformer": ["experiment=transformer_seqmnist", "model.backbone.num_layers=1"],
}
FEED_FORWARD = ("mlp", "cnn", "lenet", "resnet")  # channel pruning applies; the others log why it does not


class Checkpoints(dict):
    """A few-batch checkpoint of each backbone on the synthetic data, trained the first time a test asks."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> None:
        super().__init__()
        self.tmp_path_factory, self.data_dir = tmp_path_factory, data_dir

    def __missing__(self, backbone: str) -> Path:
        cfg = make_cfg([*BACKBONES[backbone], "test=false", "trainer.limit_train_batches=8"],
                       self.tmp_path_factory.mktemp(backbone), self.data_dir)
        run(cfg)
        self[backbone] = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return self[backbone]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Checkpoints:
    return Checkpoints(tmp_path_factory, data_dir)


def rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "compression.csv").open() as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def test_prune_cnn_masks_globally_and_channel_pruning_shrinks_the_network(trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=cnn_mnist", "mode=prune", f"ckpt_path={trained['cnn']}",
                    "compress.sparsities=[0.75]", "compress.channel_ratios=[0.5]", *FAST], tmp_path, data_dir)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    table = rows(out)
    assert list(table) == ["fp32", "magnitude 75%", "channels -50%"]
    full = int(table["fp32"]["params"])
    pruned = torch.load(out / "pruned" / "magnitude_75.pt", weights_only=False)
    weights = [v for k, v in pruned.items() if k.endswith("weight") and v.dim() > 1]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.75, abs=0.01)  # the masks were made permanent after fine-tuning
    assert int(table["magnitude 75%"]["params"]) < 0.4 * full  # non-zero parameters
    channels = torch.load(out / "pruned" / "channels_50.pt", weights_only=False)
    assert channels.backbone.features[0].out_channels == 16  # 32 -> 16: a smaller network
    assert int(table["channels -50%"]["params"]) < 0.4 * full
    assert float(table["channels -50%"]["kib"]) < 0.4 * float(table["fp32"]["kib"])
    assert channels(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert (out / "media" / "accuracy_vs_size.png").stat().st_size > 0


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b != "cnn"])  # cnn: the test above
def test_prune_every_backbone(backbone, trained, tmp_path, data_dir, caplog):
    overrides = [*BACKBONES[backbone], "mode=prune", f"ckpt_path={trained[backbone]}", "compress.sparsities=[0.5]",
                 "compress.channel_ratios=[0.5]", *FAST]
    cfg = make_cfg(overrides, tmp_path, data_dir)
    with caplog.at_level(logging.INFO, logger="lab"):
        run(cfg)
    out = Path(cfg.paths.output_dir)
    table = rows(out)
    full = int(table["fp32"]["params"])
    # magnitude pruning: half of all conv, linear, recurrent and attention weights at once, saved as a state_dict
    # that loads into the same configured model
    model = build(make_cfg(BACKBONES[backbone], tmp_path / "load", data_dir)).model
    model.load_state_dict(torch.load(out / "pruned" / "magnitude_50.pt", weights_only=False))
    kinds = {type(m).__name__ for m, _ in prunable(model)}
    assert weight_sparsity(model) == pytest.approx(0.5, abs=0.01), kinds
    assert int(table["magnitude 50%"]["params"]) < 0.6 * full
    skipped = [r.getMessage() for r in caplog.records if "channel pruning skipped" in r.getMessage()]
    if backbone in FEED_FORWARD:  # half the channels / hidden units: a smaller network that still classifies
        assert list(table) == ["fp32", "magnitude 50%", "channels -50%"] and not skipped
        assert int(table["channels -50%"]["params"]) < 0.6 * full
        pruned = torch.load(out / "pruned" / "channels_50.pt", weights_only=False)
        assert pruned(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    else:  # skipped, saying why, and the run goes on
        kind = "attention" if backbone == "transformer" else "recurrent"
        assert list(table) == ["fp32", "magnitude 50%"]
        assert len(skipped) == 1 and f"the model has {kind} layers" in skipped[0]
        assert ({"MultiheadAttention"} if kind == "attention" else {"RNN", "LSTM", "GRU"}) & kinds  # pruned too


@pytest.mark.parametrize(("backbone", "method"), [("mlp", "int8 dynamic"), ("cnn", "int8 static"),
                                                 ("lenet", "int8 static"), ("resnet", "int8 static"),
                                                 ("rnn", "int8 dynamic"), ("lstm", "int8 dynamic"),
                                                 ("gru", "int8 dynamic"), ("transformer", "int8 dynamic")])
def test_export_quantizes_to_int8_and_onnx_agrees_with_pytorch(backbone, method, trained, tmp_path, data_dir,
                                                               caplog):
    # one test batch: the int8 models are compiled for batch 50 and batch 1 (two batches add a dynamic-batch compile)
    cfg = make_cfg([*BACKBONES[backbone], "mode=export", f"ckpt_path={trained[backbone]}", *FAST,
                    "compress.calibration_batches=2",
                    "trainer.limit_test_batches=1"], tmp_path, data_dir)
    with caplog.at_level(logging.INFO, logger="lab"):
        metrics = run(cfg)
    table = rows(Path(cfg.paths.output_dir))
    assert list(table) == ["fp32", method, "onnx (onnxruntime)"]
    assert float(table["onnx (onnxruntime)"]["agreement"]) == 1.0
    assert float(table["onnx (onnxruntime)"]["acc"]) == float(table["fp32"]["acc"])
    if backbone == "rnn":  # PyTorch has no int8 nn.RNN: its weights stay fp32, and the log says so
        assert "RNN stays fp32: torch.ao's dynamic quantization has no int8 version of it" in caplog.text
    elif backbone == "transformer":  # the feed-forward layers, embedding and head in int8; attention in fp32
        assert "the attention projections (MultiheadAttention's in_proj_weight and out_proj) stay fp32" in caplog.text
        assert float(table[method]["kib"]) < 0.8 * float(table["fp32"]["kib"])
    else:
        assert float(table[method]["kib"]) < 0.5 * float(table["fp32"]["kib"])  # int8 weights
    assert float(table[method]["agreement"]) >= 0.9
    assert metrics["compress/fp32/acc"] == float(table["fp32"]["acc"])
    # the exported file, run by onnxruntime on a test batch of 50 (exported with a batch of 1): PyTorch's logits
    runner = build(make_cfg(BACKBONES[backbone], tmp_path / "load", data_dir))
    model = load_weights(runner.model, trained[backbone], "export")
    runner.datamodule.setup("test")
    x, _ = next(iter(runner.datamodule.test_dataloader()))
    with torch.no_grad():
        expected = model(x)
    logits = onnx_predictor(Path(cfg.paths.output_dir) / "exported" / "model.onnx")(x)
    assert logits.shape == expected.shape == (50, 10)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize(("overrides", "message"), [
    (["mode=prune", "compress.sparsities=[0.5,1.2]"], r"compress.sparsities=\[0.5, 1.2\]: 1.2 is outside \[0, 1\)"),
    (["mode=export", "compress.quantization=int4"],
     "compress.quantization='int4' is not valid; valid choices: auto, static"),
    (["mode=prune", "ckpt_path=null"], "mode=prune needs ckpt_path"),
])
def test_bad_compress_settings_fail_before_anything_is_written(overrides, message, trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=cnn_mnist", f"ckpt_path={trained['cnn']}", *overrides], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_compressing_a_model_that_is_not_a_classifier_is_refused(trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=vae_mnist", "mode=export", f"ckpt_path={trained['cnn']}"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="mode=export applies to classifiers"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_the_html_report_of_a_compression_run_shows_its_table_and_plot(trained, tmp_path, data_dir):
    from lab.report import build_html, find_runs

    cfg = make_cfg(["experiment=mlp_mnist", "mode=prune", f"ckpt_path={trained['mlp']}", "compress.sparsities=[0.5]",
                    *FAST], tmp_path, data_dir)
    out = Path(cfg.paths.output_dir)
    (out / ".hydra").mkdir(parents=True)  # what a CLI run leaves (the report finds runs by it)
    (out / ".hydra" / "overrides.yaml").write_text("- mode=prune\n")
    run(cfg)
    page = build_html(out, find_runs(out))
    table = page.split("<h2>Compression</h2>")[1].split("</table>")[0]
    assert "<td>fp32</td>" in table and "<td>magnitude 50%</td>" in table
    assert 'alt="accuracy vs size"' in page
