"""The plug-in contracts (lab.contracts), the mode registry (lab.modes) and the run folder's layout (lab.layout)."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from lightning.pytorch import LightningModule
from omegaconf import OmegaConf

from lab.contracts import DATA_KEYS, DataFacts, Mode, ModelHooks, Runner, data_facts, model_hooks
from lab.errors import ConfigError
from lab.layout import RunLayout, find_checkpoint
from lab.modes import load_mode
from lab.paths import CONFIG_DIR
from lab.validate import group_options, optimizer_keys


class Facts(DataFacts):
    def __init__(self, shape, classes=(), vocab=()):
        self.input_shape, self.classes, self.vocab = shape, classes, vocab


def test_data_facts_give_the_sizes_of_images_sequences_and_tables():
    grey = Facts((1, 28, 28), classes=list("0123456789")).dims()
    assert (grey["in_channels"], grey["image_size"], grey["in_features"], grey["input_size"], grey["seq_len"]) == (
        1, 28, 28 * 28, 28, 28)
    assert grey["num_classes"] == 10 and grey["class_names"][3] == "3"
    rgb = Facts((3, 32, 16)).dims()
    assert rgb["image_size"] is None and rgb["in_features"] == 3 * 32 * 16 and rgb["input_size"] is None
    seq = Facts((20, 5), vocab=["<pad>", "a", "b"]).dims()
    assert (seq["input_size"], seq["seq_len"], seq["in_features"], seq["in_channels"]) == (5, 20, 100, None)
    assert seq["vocab_size"] == 3 and seq["num_classes"] is None
    assert Facts((7,)).dims()["in_features"] == 7
    assert set(Facts((7,)).dims()) == set(DATA_KEYS)  # DATA_KEYS is derived from what the data can give


def test_objects_without_the_mixins_get_the_defaults():
    plain_model, plain_data = torch.nn.Linear(2, 2), object()
    assert model_hooks(plain_model).metric_fallback is None and model_hooks(plain_model).optimizer_param_groups() is None
    assert all(v is None for v in data_facts(plain_data).dims().values())

    class Hooked(ModelHooks, LightningModule):
        metric_fallback = ("train/loss", "min")

    hooked = Hooked()
    assert model_hooks(hooked) is hooked and model_hooks(hooked).metric_fallback == ("train/loss", "min")


def test_a_runner_or_mode_must_implement_what_the_contract_requires():
    class Half(Runner):
        def build(self, cfg):
            pass

    with pytest.raises(TypeError, match="fit, test"):
        Half()

    class Quiet(Mode):
        def run(self, runner, context, ckpt_path):
            return {}

    assert Quiet().needs_checkpoint and Quiet().best_checkpoint() is None


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_every_registered_mode_and_family_runner_follows_its_contract():
    assert set(group_options("mode")) == {"train", "eval", "predict", "explain", "attack", "prune", "export"}
    for name in group_options("mode"):
        cfg = config(f"mode={name}")
        assert list(cfg.modes) == [name]  # a run carries its own mode alone
        mode = load_mode(cfg)
        assert isinstance(mode, Mode) and mode.needs_checkpoint == (name != "train")
    for family in group_options("family"):
        runner = config(f"family={family}").runner
        assert issubclass(get_class(runner._target_), Runner), family


def test_a_mode_that_is_not_registered_or_not_a_mode_is_refused():
    cfg = config()
    OmegaConf.set_struct(cfg, False)  # as `+modes.<name>=...` on the command line adds a key
    with pytest.raises(ConfigError, match=r"mode='fit' names no class: .* the lab's modes: attack, eval, explain"):
        load_mode(OmegaConf.merge(cfg, {"mode": "fit"}))
    with pytest.raises(ConfigError, match=r"modes.lin='torch.nn.Linear' is not a lab.contracts.Mode subclass"):
        load_mode(OmegaConf.merge(cfg, {"mode": "lin", "modes": {"lin": "torch.nn.Linear"}}))
    with pytest.raises(ConfigError, match=r"modes.x='nowhere.X' cannot be imported"):
        load_mode(OmegaConf.merge(cfg, {"mode": "x", "modes": {"x": "nowhere.X"}}))


def test_optimizer_nodes_are_found_in_the_config():
    assert optimizer_keys(config("experiment=gan_mnist")) == ["model.optimizer_g", "model.optimizer_d"]
    assert optimizer_keys(config("experiment=ppo_cartpole")) == ["agent.optimizer"]
    assert optimizer_keys(config("experiment=mlp_mnist")) == ["model.optimizer"]


def test_the_run_layout_and_its_checkpoint_finder(tmp_path):
    run = RunLayout(tmp_path / "logs" / "t" / "runs" / "a")
    assert run.last_checkpoint == run.root / "checkpoints" / "last.ckpt"
    assert RunLayout.of_checkpoint(run.last_checkpoint) == run and RunLayout.of_checkpoint(tmp_path / "x.ckpt") is None
    run.checkpoints.mkdir(parents=True)
    assert run.best_checkpoint() is None
    run.last_checkpoint.write_bytes(b"")
    assert run.best_checkpoint() == run.last_checkpoint  # no best kept: the last
    (run.checkpoints / "epoch_003.ckpt").write_bytes(b"")
    run.preempted_checkpoint.write_bytes(b"")  # never "best"
    assert run.best_checkpoint() == run.checkpoints / "epoch_003.ckpt"
    assert find_checkpoint(tmp_path / "logs" / "t", "model.init_from") == run.checkpoints / "epoch_003.ckpt"
    with pytest.raises(ValueError, match="model.init_from='.*nope' does not exist"):
        find_checkpoint(tmp_path / "nope", "model.init_from")
