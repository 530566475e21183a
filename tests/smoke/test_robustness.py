"""mode=explain and mode=attack of trained checkpoints, and adversarial training, end to end through run(cfg)."""

import csv
from pathlib import Path

import pytest
from PIL import Image

from helpers import make_cfg
from lab.errors import ConfigError
from lab.run import run

FAST_ATTACK = ["attack.limit_batches=1", "attack.pgd_steps=3"]
FAST_EXPLAIN = ["explain.num_images=6", "explain.ig_steps=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A few-batch checkpoint of a conv net, a recurrent net and a seq2seq model, on the synthetic data."""
    out = {}
    for exp, extra in (("cnn_mnist", ["trainer.limit_train_batches=8"]), ("lstm_seqmnist", []),
                       ("seq2seq_reverse", ["data.max_len=8"])):
        tmp = tmp_path_factory.mktemp(exp)
        cfg = make_cfg([f"experiment={exp}", "test=false", *extra], tmp, data_dir)
        run(cfg)
        out[exp] = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return out


def cli_run_folder(cfg) -> Path:
    """What a CLI run leaves besides its outputs (the HTML report finds runs by their .hydra/ folder)."""
    out = Path(cfg.paths.output_dir)
    (out / ".hydra").mkdir(parents=True)
    (out / ".hydra" / "overrides.yaml").write_text(f"- mode={cfg.mode}\n")
    return out


def test_attack_measures_clean_fgsm_and_pgd_accuracy_and_the_report_shows_the_plot(trained, tmp_path, data_dir):
    from lab.report import build_html, find_runs

    cfg = make_cfg(["experiment=cnn_mnist", "mode=attack", f"ckpt_path={trained['cnn_mnist']}",
                    "attack.epsilons=[0.1,1.0]", *FAST_ATTACK], tmp_path, data_dir)
    out = cli_run_folder(cfg)
    metrics = run(cfg)
    with (out / "attack.csv").open() as f:
        rows = {(r["method"], float(r["eps"])): r for r in csv.DictReader(f)}
    assert list(rows) == [("clean", 0.0), ("fgsm", 0.1), ("fgsm", 1.0), ("pgd", 0.1), ("pgd", 1.0)]
    assert {r["examples"] for r in rows.values()} == {"50"}  # one test batch (data.eval_batch_size=50)
    assert metrics["attack/clean/acc"] == float(rows[("clean", 0.0)]["acc"]) > 0.5
    for method in ("fgsm", "pgd"):
        assert metrics[f"attack/{method}/eps_0.1/acc"] <= metrics["attack/clean/acc"]
    # at eps 1 the attacker may draw any image: PGD leaves no test image correctly classified
    assert metrics["attack/pgd/eps_1/acc"] == 0.0
    assert "| pgd | 0.1 |" in (out / "attack.md").read_text()
    assert Image.open(out / "media" / "accuracy_vs_epsilon.png").size[0] > 300
    logged = list((out / "csv").glob("*/metrics.csv"))[0].read_text().splitlines()[0]
    assert "attack/fgsm/eps_0.1/acc" in logged.split(",")
    page = build_html(out, find_runs(out))
    assert "accuracy_vs_epsilon.png" in page


def test_explain_writes_saliency_and_integrated_gradients_grids(trained, tmp_path, data_dir):
    from lab.report import build_html, find_runs

    cfg = make_cfg(["experiment=cnn_mnist", "mode=explain", f"ckpt_path={trained['cnn_mnist']}", *FAST_EXPLAIN],
                   tmp_path, data_dir)
    out = cli_run_folder(cfg)
    metrics = run(cfg)
    assert metrics["explain/images"] == 6
    assert metrics["explain/integrated_gradients/delta"] < 0.05  # 8 Gauss-Legendre steps: nearly complete
    for method in ("saliency", "integrated_gradients"):
        assert Image.open(out / "media" / f"explain_{method}.png").size[0] > 300
    page = build_html(out, find_runs(out))
    assert "explain_saliency.png" in page and "explain_integrated_gradients.png" in page


def test_explain_a_recurrent_classifier_draws_its_sequence_attributions(trained, tmp_path, data_dir):
    cfg = make_cfg(["experiment=lstm_seqmnist", "mode=explain", f"ckpt_path={trained['lstm_seqmnist']}",
                    "explain.methods=[integrated_gradients]", *FAST_EXPLAIN], tmp_path, data_dir)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir) / "media"
    assert sorted(p.name for p in out.glob("*.png")) == ["explain_integrated_gradients.png"]
    assert metrics["explain/integrated_gradients/delta"] < 0.05


def test_explain_a_seq2seq_model_draws_its_attention_maps(trained, tmp_path):
    cfg = make_cfg(["experiment=seq2seq_reverse", "mode=explain", f"ckpt_path={trained['seq2seq_reverse']}",
                    "data.max_len=8", "explain.num_images=6"], tmp_path, None)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir) / "media"
    assert metrics["explain/images"] == 6
    assert sorted(p.name for p in out.glob("*.png")) == ["attention_1.png", "attention_2.png"]  # 4 + 2 sources


def test_adversarial_training_runs_and_logs_the_adversarial_loss(tmp_path, data_dir):
    cfg = make_cfg(["experiment=cnn_mnist", "test=false", "model.adversarial.eps=0.1", "model.adversarial.method=pgd",
                    "model.adversarial.pgd_steps=2"], tmp_path, data_dir)
    metrics = run(cfg)
    # loss = (clean + adversarial) / 2, and the adversarial examples' loss is the larger
    assert metrics["train/adv_loss"] > metrics["train/loss"]
    assert 0.0 <= metrics["train/adv_acc"] <= metrics["train/acc"] + 0.1
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(("overrides", "message"), [
    (["experiment=vae_mnist", "mode=attack"], "mode=attack applies to classifiers"),
    (["experiment=vae_mnist", "mode=explain"], "mode=explain applies to classifiers .* and seq2seq models"),
    (["experiment=cnn_mnist", "mode=attack", "attack.epsilons=[0.1,1.5]"], "epsilon=1.5 is not valid"),
    (["experiment=cnn_mnist", "mode=attack", "attack.methods=[fgsm,cw]"], "'cw' is not valid; valid choices: fgsm, pgd"),
    (["experiment=cnn_mnist", "model.adversarial.eps=-0.1"], r"model.adversarial.eps=-0.1 is not valid"),
])
def test_bad_robustness_settings_and_models_fail_before_anything_is_written(overrides, message, trained, tmp_path,
                                                                             data_dir):
    ckpt = [f"ckpt_path={trained['cnn_mnist']}"] if any(o.startswith("mode=") for o in overrides) else []
    cfg = make_cfg([*overrides, *ckpt], tmp_path, data_dir)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()


def test_explain_refuses_a_seq2seq_model_without_attention(tmp_path):
    cfg = make_cfg(["experiment=seq2seq_reverse", "model.net.attention=none", "test=false", "data.max_len=8"],
                   tmp_path / "train", None)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    cfg = make_cfg(["experiment=seq2seq_reverse", "model.net.attention=none", "mode=explain", f"ckpt_path={ckpt}",
                    "data.max_len=8"], tmp_path / "explain", None)
    with pytest.raises(ConfigError, match="attention maps, but this one has none"):
        run(cfg)
    assert not Path(cfg.paths.output_dir).exists()
