"""mode=prune and mode=export of trained classifiers, end to end through run(cfg)."""

import csv
from pathlib import Path

import pytest
import torch

from helpers import make_cfg
from lab.errors import ConfigError
from lab.run import run

FAST = ["compress.latency_repeats=2", "compress.calibration_batches=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A few-batch checkpoint of each experiment, on the synthetic data."""
    out = {}
    for exp in ("cnn_mnist", "mlp_mnist", "lstm_seqmnist"):
        tmp = tmp_path_factory.mktemp(exp)
        cfg = make_cfg([f"experiment={exp}", "test=false", "trainer.limit_train_batches=8"], tmp, data_dir)
        run(cfg)
        out[exp] = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return out


def rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "compression.csv").open() as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def test_prune_cnn_masks_globally_and_channel_pruning_shrinks_the_network(trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=cnn_mnist", "mode=prune", f"ckpt_path={trained['cnn_mnist']}",
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


@pytest.mark.parametrize(("exp", "method"), [("cnn_mnist", "int8 static"), ("mlp_mnist", "int8 dynamic"),
                                             ("lstm_seqmnist", "int8 dynamic")])
def test_export_quantizes_to_int8_and_onnx_agrees_with_pytorch(exp, method, trained, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={exp}", "mode=export", f"ckpt_path={trained[exp]}", *FAST], tmp_path, data_dir)
    metrics = run(cfg)
    table = rows(Path(cfg.paths.output_dir))
    assert list(table) == ["fp32", method, "onnx (onnxruntime)"]
    assert float(table["onnx (onnxruntime)"]["agreement"]) == 1.0
    assert float(table["onnx (onnxruntime)"]["acc"]) == float(table["fp32"]["acc"])
    assert float(table[method]["kib"]) < 0.5 * float(table["fp32"]["kib"])  # int8 weights
    assert float(table[method]["agreement"]) >= 0.9
    assert (Path(cfg.paths.output_dir) / "exported" / "model.onnx").is_file()
    assert metrics["compress/fp32/acc"] == float(table["fp32"]["acc"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["compress.sparsities=[0.5,1.2]"], r"compress.sparsities=\[0.5, 1.2\]: 1.2 is outside \[0, 1\)"),
    (["compress.quantization=int4"], "compress.quantization='int4' is not valid; valid choices: auto, static"),
    (["ckpt_path=null"], "mode=prune needs ckpt_path"),
])
def test_bad_compress_settings_fail_before_anything_is_written(overrides, message, trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=cnn_mnist", "mode=prune", f"ckpt_path={trained['cnn_mnist']}", *overrides],
                   tmp_path, data_dir)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_compressing_a_model_that_is_not_a_classifier_is_refused(trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=vae_mnist", "mode=export", f"ckpt_path={trained['cnn_mnist']}"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="mode=export applies to classifiers"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_the_html_report_of_a_compression_run_shows_its_table_and_plot(trained, tmp_path, data_dir):
    from lab.report import build_html, find_runs

    cfg = make_cfg(["experiment=mlp_mnist", "mode=prune", f"ckpt_path={trained['mlp_mnist']}", "compress.sparsities=[0.5]",
                    *FAST], tmp_path, data_dir)
    out = Path(cfg.paths.output_dir)
    (out / ".hydra").mkdir(parents=True)  # what a CLI run leaves (the report finds runs by it)
    (out / ".hydra" / "overrides.yaml").write_text("- mode=prune\n")
    run(cfg)
    page = build_html(out, find_runs(out))
    table = page.split("<h2>Compression</h2>")[1].split("</table>")[0]
    assert "<td>fp32</td>" in table and "<td>magnitude 50%</td>" in table
    assert 'alt="accuracy vs size"' in page
