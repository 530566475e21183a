"""Every tensor a module uses moves with it: the CPU stand-in for a GPU.

On a CPU-only machine everything lives on one device, so a tensor or helper network kept where `.to(device)`
cannot see it (a plain list, an attribute made in `__init__` or in `setup`, which Lightning runs *before* it
moves the module) works here and crashes on the first GPU batch. Moving the module to `meta`, a second device
type every PyTorch build has, after the hooks the Trainer runs before its move (`setup`, `configure_model`) and
then the ones it runs after (`on_fit_start`), and finding any reachable tensor that did not go along, is the same
failure without a GPU. Two bugs this caught: the GAN's and VAE's quality classifier, held in a plain list, and
PPO's rollout buffer, built in `setup` on the CPU.

Every family the lab trains with Lightning is here, one experiment each: the classifier (four backbones), VAE,
GAN, seq2seq (RNN and Transformer), HMM, RBM, DBN, multi-task, transfer (from a saved state_dict, backbone
frozen) and the agents PPO, DQN and SAC. SB3's agents (`agent=sb3*`) cannot be: they are no LightningModule
and place their own tensors (`agent.device`, from `trainer.accelerator`; tests/gpu checks where they train).
"""

from __future__ import annotations

import pytest
import torch
from devices import not_moved, reachable_tensors
from lightning.pytorch import Trainer
from torch import nn

from agents.ppo import PPO
from helpers import build, make_cfg


def set_up_and_move(module, stage: str = "fit") -> None:
    """What Trainer.fit does around its move to the device (lightning.pytorch.trainer.Trainer._run)."""
    module.setup(stage)
    module.configure_model()
    module.to("meta")
    module.on_fit_start()


def test_the_walk_finds_a_helper_kept_out_of_the_module():
    """The shape of the old bug: a helper network in a plain list stays behind when its owner moves."""

    class Owner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(2, 2)
            self._helpers = [nn.Linear(2, 2)]

    owner = Owner().to("meta")
    assert sorted(not_moved(owner)) == ["module._helpers[0]._parameters['bias'] (cpu)",
                                        "module._helpers[0]._parameters['weight'] (cpu)"]


MODELS = {
    "classifier": ["experiment=cnn_mnist"],
    "resnet": ["experiment=resnet_fashion"],
    "lstm": ["experiment=lstm_seqmnist"],
    "transformer": ["experiment=transformer_seqmnist"],
    "vae": ["experiment=vae_mnist"],
    "conv_vae": ["experiment=conv_vae_mnist"],
    "gan": ["experiment=gan_mnist"],
    "cgan": ["experiment=cgan_mnist"],
    "seq2seq_rnn": ["experiment=seq2seq_reverse"],
    "seq2seq_transformer": ["experiment=transformer_dates"],
    "hmm": ["experiment=hmm_seqmnist"],
    "rbm": ["experiment=rbm_mnist", "model.persistent=true"],  # the persistent chains are a buffer
    "dbn": ["experiment=dbn_mnist", "trainer.max_epochs=5"],  # its pretraining epochs and one to fine-tune
    "multitask": ["experiment=multitask_mnist_fashion", "model.weighting=uncertainty"],  # the log-variances
    "transfer": ["experiment=transfer_fashion", "data.labels_per_class=20", "model.freeze=[backbone]"],
}


def source_state_dict(tmp_path, data_dir) -> str:
    """transfer_fashion's source, untrained: cnn_mnist's state_dict saved as a plain file (init_from takes it)."""
    path = tmp_path / "cnn_mnist.pt"
    torch.save(build(make_cfg(["experiment=cnn_mnist"], tmp_path, data_dir)).model.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("family", MODELS)
def test_data_model_families_move_every_tensor(family, tmp_path, data_dir):
    extra = [f"model.init_from={source_state_dict(tmp_path, data_dir)}"] if family == "transfer" else []
    cfg = make_cfg([*MODELS[family], *extra], tmp_path, data_dir)
    runner = build(cfg)
    model = runner.model
    # attached before setup, as Trainer.fit does (the DBN's on_fit_start reads max_epochs)
    model.trainer = Trainer(max_epochs=cfg.trainer.max_epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    # what DDP's sync_batchnorm (trainer=ddp on CUDA) does first: it must not trip on frozen helpers
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    set_up_and_move(model)
    assert not_moved(model) == []
    if family in ("vae", "gan"):  # the quality classifier went along, as a child, and is in no checkpoint
        assert model.quality.features.head.weight.device.type == "meta"
        assert not [k for k in model.state_dict() if k.startswith("quality.")]


AGENTS = {
    "ppo": ["experiment=ppo_cartpole", "env.num_envs=2", "agent.num_steps=8", "agent.batch_size=8"],
    "ppo_nature_cnn": ["experiment=ppo_breakout", "env.num_envs=1", "agent.num_steps=8", "agent.batch_size=8"],
    "dqn": ["experiment=dqn_cartpole", "agent.buffer_size=64"],
    "sac": ["experiment=sac_pendulum", "agent.buffer_size=64", "agent.batch_size=16"],
}


@pytest.mark.parametrize("agent", AGENTS)
def test_agents_move_every_tensor(agent, tmp_path):
    runner = build(make_cfg([*AGENTS[agent], "agent.video=false"], tmp_path, None, smoke=False))
    module = runner.agent
    try:
        set_up_and_move(module)
        moved = not_moved(module)
        tensors = [p for p, _ in reachable_tensors(module)]
    finally:
        module.teardown("fit")
    assert moved == []
    if isinstance(module, PPO):  # the rollout buffer was made after the move, on the module's device
        assert "module.buffer.obs" in tensors
