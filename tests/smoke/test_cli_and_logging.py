"""The command line (`python -m lab`), Hydra multiruns and what W&B (offline) records."""

import os
import subprocess
import sys
from pathlib import Path

import wandb

from helpers import SMOKE, make_cfg
from lab.layout import RunLayout
from lab.loggers import read_wandb_records
from lab.paths import ROOT
from lab.run import run


def wandb_runs(folder: Path) -> list[Path]:
    return sorted(folder.glob("**/wandb/offline-run-*"))


def summary_of(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        if r["type"] == "summary":
            out.update(r["summary"].get("update", {}))
    return out


def test_wandb_offline_run_records_config_tags_metrics(tmp_path, data_dir):
    cfg = make_cfg(["experiment=mlp_mnist", "logger=default"], tmp_path, data_dir)
    metrics = run(cfg)
    assert wandb.run is None  # finished, so a next job cannot reuse it
    out = Path(cfg.paths.output_dir)
    (run_dir,) = wandb_runs(out)
    records = read_wandb_records(run_dir)
    (run_record,) = [r["run"] for r in records if r["type"] == "run"]
    assert run_record["tags"] == ["mlp_mnist"] and run_record["display_name"] == "mlp_mnist"
    assert run_record["run_id"] == RunLayout(out).wandb_id_file.read_text()
    config = {}
    for r in records:
        if r["type"] == "config":
            config.update(r["config"]["update"])
    assert config["task_name"] == "mlp_mnist" and config["model"]["backbone"]["_target_"] == "lab.backbones.MLP"
    history_keys = {k for r in records if r["type"] == "history" for k in r["history"]["item"]}
    assert {"train/loss_step", "val/acc", "test/acc"} <= history_keys
    assert summary_of(records)["test/acc"] == metrics["test/acc"]


def test_each_run_in_a_process_is_its_own_wandb_run(tmp_path, data_dir):
    for seed in (0, 1):
        run(make_cfg(["experiment=mlp_mnist", "logger=wandb", f"seed={seed}", "test=false"],
                     tmp_path / str(seed), data_dir))
    ids = [p.name.rsplit("-", 1)[-1] for p in wandb_runs(tmp_path)]
    assert len(ids) == 2 and ids[0] != ids[1]


def lab_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "CI": "true"}
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_multirun_is_one_wandb_group_with_one_run_per_job(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    res = lab_cli("-m", "experiment=mlp_mnist", "seed=0,1", *SMOKE, "logger=default", f"paths.data_dir={data_dir}",
                  f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    groups, ids = set(), set()
    for job in ("0", "1"):
        (run_dir,) = wandb_runs(sweep / job)
        (run_record,) = [r["run"] for r in read_wandb_records(run_dir) if r["type"] == "run"]
        groups.add(run_record["run_group"])
        ids.add(run_record["run_id"])
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert groups == {"mlp_mnist-sweep"} and len(ids) == 2
    assert "Final metrics:" in res.stdout and "test/acc" in res.stdout


def test_cli_bad_value_is_a_one_paragraph_error(tmp_path, data_dir):
    res = lab_cli(*SMOKE, "experiment=mlp_mnist", "data.batch_size=0", f"paths.data_dir={data_dir}",
                  f"paths.log_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 2
    assert "error: data.batch_size=0 is not valid" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_unknown_experiment_lists_the_valid_ones(tmp_path):
    res = lab_cli("experiment=cnn_mnst", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode != 0
    assert "Could not find 'experiment/cnn_mnst'" in res.stderr and "cnn_mnist" in res.stderr
    assert "lstm_seqmnist" in res.stderr


def test_a_first_run_reads_cleanly_and_ends_with_its_outputs(gan_cli_run):
    """What `make run` shows: each metric once per epoch line, no noise the user cannot act on, the final
    metrics once each, and a closing block that says where everything is."""
    run_dir, proc = gan_cli_run
    out = proc.stdout + proc.stderr
    assert "wandb: Tracking run" in out  # W&B speaks (not silenced), so its warnings would show
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    for line in epoch_lines:
        names = [field.split("=")[0] for field in line.split() if "=" in field]
        assert len(names) == len(set(names)) and "train/d_loss" in names and "val/fid" in names
        assert not [n for n in names if n.endswith(("_step", "_epoch")) or n.startswith("lr-")]
    for noise in ("litlogger", "anonymous setting", "LeafSpec", "FLOPs", "Skipping setting a default"):
        assert noise not in out, noise
    final = proc.stdout.split("Final metrics:")[1].split("Outputs:")[0]
    keys = [line.split(":")[0].strip() for line in final.strip().splitlines()]
    assert "test/fid" in keys and len(keys) == len(set(keys))
    assert not [k for k in keys if k.endswith(("_step", "_epoch"))]
    block = dict(line.strip().split(":", 1) for line in proc.stdout.split("Outputs:")[1].strip().splitlines())
    block = {k: v.strip() for k, v in block.items()}
    assert Path(block["run folder"]) == run_dir
    assert Path(block["best checkpoint"]).is_file() and Path(block["best checkpoint"]).parent == run_dir / "checkpoints"
    assert Path(block["media folder"]) == run_dir / "media"
    assert Path(block["last sample grid"]) == run_dir / "media" / "samples_epoch002.png"
    wandb_dir = Path(block["W&B run folder"])
    assert wandb_dir.parent == run_dir / "wandb" and wandb_dir.name.startswith("offline-run-")
    assert block["W&B sync"] == f"wandb sync {wandb_dir}"
    assert block["HTML report"] == f"python -m lab.report {run_dir}"
    import csv

    header = next(csv.reader((next(run_dir.glob("csv/*/metrics.csv"))).open()))
    assert {"lr/generator", "lr/discriminator"} <= set(header)
