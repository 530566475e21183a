"""Every option of every config group composes and instantiates; bad values fail before training."""

import hydra
import pytest
import torch
from hydra.errors import ConfigCompositionException
from lightning.pytorch import LightningDataModule, LightningModule
from omegaconf import OmegaConf

from helpers import build, experiments_with, make_cfg
from lab.errors import ConfigError
from lab.instantiate import instantiate
from lab.paths import CONFIG_DIR
from lab.validate import group_options, validate


def test_groups_have_the_expected_options():
    assert set(group_options("data")) >= {"mnist", "fashion_mnist", "seq_mnist", "image_folder", "torchvision"}
    assert set(group_options("model/backbone")) >= {"mlp", "cnn", "resnet", "rnn", "lstm", "gru", "transformer"}
    assert set(group_options("family")) == {"supervised", "gan", "vae", "seq2seq", "rl"}
    assert set(group_options("trainer")) >= {"default", "cpu", "gpu", "ddp", "debug"}
    assert set(group_options("logger")) >= {"wandb", "csv", "tensorboard", "many", "none"}
    assert set(group_options("model/optimizer")) >= {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"}
    assert set(group_options("model/scheduler")) >= {"onecycle", "cosine", "step", "plateau"}
    assert set(group_options("agent")) >= {"dqn", "ppo", "sb3_dqn", "sb3_ppo"}
    assert set(group_options("env")) >= {"cartpole", "acrobot", "lunarlander", "pendulum", "halfcheetah", "pong",
                                         "breakout"}
    assert set(group_options("experiment")) >= {"mlp_mnist", "cnn_mnist", "resnet_fashion", "lstm_seqmnist",
                                                "gru_seqmnist", "transformer_seqmnist"}


USER_DATA = ("image_folder", "torchvision", "tabular")  # they need data.root / data.name: tests/smoke/test_user_data.py
NOT_IMAGES = ("seq2seq", "diabetes")  # generated token sequences: tests/unit/lab/test_seq2seq.py
SEVERAL = ("multitask_mnist_fashion",)  # several datasets at once: tests/unit/lab/test_multitask.py


@pytest.mark.parametrize("name", [d for d in group_options("data") if d not in USER_DATA + NOT_IMAGES + SEVERAL])
@pytest.mark.parametrize("augment", [None, *group_options("data/augment")])
def test_data_options(name, augment, tmp_path, data_dir):
    cfg = make_cfg([f"data={name}"] + ([f"data/augment={augment}"] if augment else []), tmp_path, data_dir)
    dm = instantiate(cfg.data, "data")
    dm.prepare_data()
    dm.setup("fit")
    x, y = dm.train_set[0]
    assert tuple(x.shape) == dm.input_shape


@pytest.mark.parametrize("name", group_options("model/backbone"))
def test_backbone_options(name, tmp_path, data_dir):
    sequence = name in ("rnn", "lstm", "gru", "transformer")
    cfg = make_cfg([f"model/backbone={name}", f"data={'seq_mnist' if sequence else 'mnist'}"], tmp_path, data_dir)
    net = build(cfg).model.backbone  # sizes filled from the data
    shape = (28, 28) if sequence else (1, 28, 28)
    assert net(torch.zeros(2, *shape)).shape == (2, net.out_features)


@pytest.mark.parametrize("optimizer", group_options("model/optimizer"))
def test_optimizer_options(optimizer, tmp_path, data_dir):
    cfg = make_cfg([f"model/optimizer={optimizer}", "model/backbone=mlp"], tmp_path, data_dir)
    model = build(cfg).model
    opt = model.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.Optimizer) and opt.defaults["lr"] == cfg.model.optimizer.lr


@pytest.mark.parametrize("scheduler", group_options("model/scheduler"))
def test_scheduler_options(scheduler, tmp_path):
    cfg = make_cfg([f"model/scheduler={scheduler}"], tmp_path, None)
    factory = hydra.utils.instantiate(cfg.model.scheduler)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    extra = {"onecycle": {"total_steps": 10}, "cosine": {"T_max": 10}}.get(scheduler, {})
    sched = factory(opt, **extra)
    assert sched.optimizer is opt


@pytest.mark.parametrize("name", group_options("trainer"))
def test_trainer_options(name, tmp_path):
    cfg = make_cfg([f"trainer={name}"], tmp_path, None, smoke=False)
    if name == "gpu" and not torch.cuda.is_available():
        with pytest.raises(Exception, match="(?i)gpu|cuda"):
            instantiate(cfg.trainer, "trainer", logger=False)
        return
    trainer = instantiate(cfg.trainer, "trainer", logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("name", group_options("logger"))
def test_logger_options(name, tmp_path):
    cfg = make_cfg([f"logger={name}"], tmp_path, None, smoke=False)
    loggers = [instantiate(node, f"logger.{k}") for k, node in (cfg.logger or {}).items()]
    expected = {"none": 0, "many": 3, "default": 2}.get(name, 1)
    assert len(loggers) == expected


def test_callbacks_default(tmp_path):
    cfg = make_cfg([], tmp_path, None, smoke=False)
    callbacks = [instantiate(node, f"callbacks.{k}") for k, node in cfg.callbacks.items()]
    assert len(callbacks) == 9
    # outside a trial of an Optuna sweep the pruning node gives no callback (lab.callbacks.build_callbacks skips it)
    assert callbacks[list(cfg.callbacks).index("optuna_pruning")] is None
    # SLURM's preemption signal is acted on before any other callback logs for the step it stops before
    assert type(callbacks[0]).__name__ == "Preemption"
    # last.ckpt is written every epoch by its own callback, not only when the monitored metric improves
    assert cfg.callbacks.last_checkpoint.filename == "last" and cfg.callbacks.last_checkpoint.monitor is None


RL = experiments_with("agent")


@pytest.mark.parametrize("name", RL)
def test_rl_experiment_options(name, tmp_path):
    cfg = make_cfg([f"experiment={name}"], tmp_path, None, smoke=False)
    assert cfg.task_name == name and cfg.get("model") is None and cfg.get("data") is None
    validate(cfg)
    env = instantiate(cfg.env, "env")
    agent = instantiate(cfg.agent, "agent", env=cfg.env)
    assert agent.env_cfg == env and agent.total_timesteps >= 10_000
    OmegaConf.to_container(cfg, resolve=True)


def box_actions_only(agent: str) -> bool:
    """Whether agent=<agent> takes Box actions alone: told by its class (the lab's SAC) or its SB3 algorithm."""
    from gymnasium import spaces
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    from agents.sac import SAC
    from agents.sb3.spaces import ACTION_SPACES

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        node = compose("config", overrides=["family=rl", f"agent={agent}"]).agent
    cls = get_class(node._target_)
    algo = node.get("algo") or getattr(cls, "algorithm", None)  # SB3's algorithm: by name or the wrapper's class
    if algo is not None:
        return ACTION_SPACES[algo if isinstance(algo, str) else algo.__name__] == (spaces.Box,)
    return issubclass(cls, SAC)


# Box-only agents on Pendulum; the others on a vector env and an Atari one
AGENT_ENVS = [(a, e) for a in group_options("agent") for e in (["pendulum"] if box_actions_only(a) else
                                                               ["cartpole", "pong"])]


@pytest.mark.parametrize(("agent", "env"), AGENT_ENVS)
def test_agent_and_env_options(agent, env, tmp_path):
    cfg = make_cfg(["family=rl", f"agent={agent}", f"env={env}",
                    "agent.encoder=" + ("nature_cnn" if env == "pong" else "mlp")], tmp_path, None, smoke=False)
    runner = build(cfg)  # the env, the agent, and the check that they suit each other
    assert type(runner).__name__ == ("SB3Runner" if agent.startswith("sb3") else "AgentRunner")
    assert runner.agent.env_cfg.id == cfg.env.id


# Experiments that start from another run's checkpoint: built here from scratch (tests/smoke covers the rest).
NEEDS_A_SOURCE_RUN = {"transfer_fashion": ["model.init_from=null", "data.labels_per_class=20"]}


@pytest.mark.parametrize("name", [e for e in group_options("experiment") if e not in RL])
def test_experiment_options(name, tmp_path, data_dir):
    cfg = make_cfg([f"experiment={name}", *NEEDS_A_SOURCE_RUN.get(name, [])], tmp_path, data_dir)
    assert cfg.task_name == name
    validate(cfg)
    runner = build(cfg)
    assert isinstance(runner.model, LightningModule) and isinstance(runner.datamodule, LightningDataModule)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_unknown_experiment_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg(["experiment=cnn_mnistt"], tmp_path, None)
    assert "cnn_mnist" in str(e.value) and "lstm_seqmnist" in str(e.value)


def test_unknown_mode_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg(["mode=trian"], tmp_path, None)
    assert "Could not find 'mode/trian'" in str(e.value) and all(f"\t{m}\n" in str(e.value) for m in (
        "train", "eval", "predict", "explain", "attack", "prune", "export"))


def test_a_modes_settings_exist_in_its_runs_alone(tmp_path):
    assert not {"predict", "explain", "attack", "compress"} & set(make_cfg([], tmp_path, None))
    assert "predict" in make_cfg(["mode=predict"], tmp_path, None)
    prune, export = (make_cfg([f"mode={m}"], tmp_path, None).compress for m in ("prune", "export"))
    assert "sparsities" in prune and "quantization" not in prune
    assert "quantization" in export and "sparsities" not in export
    assert prune.latency_repeats == export.latency_repeats
    with pytest.raises(ConfigCompositionException, match="Could not override 'predict.output'"):
        make_cfg(["predict.output=out.csv"], tmp_path, None)  # forgot mode=predict: an error, not ignored


def test_unknown_optimizer_option_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg(["model/optimizer=lamb"], tmp_path, None)
    assert "adamw" in str(e.value) and "rmsprop" in str(e.value)


@pytest.mark.parametrize(
    "override,match",
    [
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.batch_size=-8", "data.batch_size=-8"),
        ("model.optimizer.lr=0", "model.optimizer.lr=0"),
        ("model.optimizer.lr=-1e-3", "model.optimizer.lr=-0.001"),
        ("trainer.max_epochs=-3", "trainer.max_epochs=-3"),
        ("model.optimizer._target_=torch.optim.Lamb", "model.optimizer._target_='torch.optim.Lamb'.*adamw"),
        ("model.optimizer._target_=torch.nn.Linear", "is not a Optimizer"),
        ("experiment=gan_mnist model.optimizer_d.lr=0", "model.optimizer_d.lr=0"),
        ("model/optimizer=sgd model.optimizer.momentum=-0.5", "`model.optimizer`: Invalid momentum value: -0.5"),
        ("experiment=gan_mnist model.optimizer_g.betas=[0.5,1.5]", "`model.optimizer_g`: Invalid beta parameter"),
        ("experiment=ppo_cartpole agent.optimizer.eps=-1", "`agent.optimizer`: Invalid epsilon value: -1"),
        ("family=rl env=gym", "env.id: required and not set.*env.id=<value>"),
        ("mode=eval", "mode=eval needs ckpt_path"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path='/no/such.ckpt' is not a file"),
        ("resume=maybe", "resume='maybe'"),
    ],
)
def test_invalid_values_fail_validation(override, match, tmp_path):
    cfg = make_cfg(override.split(), tmp_path, None, smoke=False)
    with pytest.raises(ConfigError, match=match):
        validate(cfg)


@pytest.mark.parametrize(("search", "mode", "direction"), [("vae_mnist_optuna", "min", "minimize"),
                                                          ("cnn_mnist_optuna", "max", "maximize"),
                                                          ("ppo_cartpole_optuna", "max", "maximize")])
def test_optuna_direction_comes_from_optimized_mode(search, mode, direction):
    from hydra import compose, initialize_config_dir

    from hydra_plugins.lab_optuna_sweeper import OptunaSweeper
    from lab.paths import CONFIG_DIR

    experiment = search.removesuffix("_optuna")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", f"hparams_search={search}"],
                      return_hydra_config=True)
        flipped = compose("config", overrides=[f"experiment={experiment}", f"hparams_search={search}",
                                               f"optimized_mode={'max' if mode == 'min' else 'min'}"],
                          return_hydra_config=True)
    assert cfg.optimized_mode == mode and cfg.hydra.sweeper.direction == mode
    assert flipped.hydra.sweeper.direction != mode  # one source of truth: the sweep follows optimized_mode
    node = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    node.pop("_target_")
    assert OptunaSweeper(**node).direction == direction


@pytest.mark.parametrize(("devices", "nodes"), [(4, 1), (8, 2)])
def test_slurm_multi_gpu_jobs_follow_the_trainer(devices, nodes):
    """One SLURM task per GPU on each node, as Lightning's DDP reads SLURM's environment."""
    from hydra import compose, initialize_config_dir

    from lab.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=cnn_mnist", "hydra/launcher=slurm_multi_gpu", "trainer=ddp",
                                           f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (nodes, devices, devices)
