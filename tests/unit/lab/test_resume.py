"""resume=true finds the run of the same configuration (lab/resume.py)."""

from pathlib import Path

import pytest
import yaml

from helpers import make_cfg
from lab.errors import ConfigError
from lab.layout import RunLayout
from lab.resume import configuration, find_resume_checkpoint, mode_settings, save_run_config

LENGTH = ("trainer.max_epochs", "trainer.max_steps")


def earlier_run(tmp_path: Path, name: str, config: dict) -> Path:
    layout = RunLayout(tmp_path / "logs" / "mlp_mnist" / "runs" / name)
    layout.checkpoints.mkdir(parents=True)
    layout.last_checkpoint.write_bytes(b"")  # finding a run reads its config, not its checkpoint
    save_run_config(config, layout.root)
    return layout.last_checkpoint


def test_a_run_from_before_modes_were_a_config_group_is_still_continued(tmp_path):
    cfg = make_cfg(["experiment=mlp_mnist", "resume=true"], tmp_path, None)
    old = configuration(cfg, LENGTH)
    # what conf/config.yaml held globally then, in every run's run_config.yaml
    old.update(compress={"sparsities": [0.5], "quantization": "auto"}, predict={"input": None, "batch_size": 256},
               explain={"num_images": 16}, attack={"epsilons": [0.1]})
    ckpt = earlier_run(tmp_path, "old", old)
    assert find_resume_checkpoint(cfg, LENGTH) == ckpt


def test_a_run_of_another_configuration_is_named_with_the_difference(tmp_path):
    cfg = make_cfg(["experiment=mlp_mnist", "resume=true"], tmp_path, None)
    other = configuration(cfg, LENGTH)
    other["seed"] = 99
    ckpt = earlier_run(tmp_path, "other", other)
    with pytest.raises(ConfigError, match=rf"{ckpt} \(differs in seed=99\)"):
        find_resume_checkpoint(cfg, LENGTH)
    assert find_resume_checkpoint(cfg, LENGTH, required=False) is None
    assert yaml.safe_load(RunLayout(ckpt.parent.parent).run_config.read_text())["seed"] == 99  # left as it was


def test_mode_settings_are_not_part_of_the_configuration(tmp_path):
    assert mode_settings() == ("attack", "compress", "explain", "predict")  # read from conf/mode/*.yaml
    trained = configuration(make_cfg(["experiment=mlp_mnist"], tmp_path, None), LENGTH)
    pruned = configuration(make_cfg(["experiment=mlp_mnist", "mode=prune", "compress.sparsities=[0.3]"], tmp_path,
                                    None), LENGTH)
    assert "compress" not in pruned and pruned == trained
