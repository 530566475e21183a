"""PPO's hyperparameters (agent=ppo and agent=sb3_ppo): see agents.common.hyperparameters for the design."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.hyperparameters import AlgorithmConfig, check_unit
from lab.checks import check_ints


@dataclass(frozen=True, kw_only=True)
class PPOConfig(AlgorithmConfig):
    """SB3's PPO defaults under CleanRL's names (SB3's in brackets where they differ)."""

    num_steps: int = 2048  # per env per rollout [n_steps]
    batch_size: int = 64  # minibatch size
    update_epochs: int = 10  # [n_epochs]
    gae_lambda: float = 0.95
    clip_coef: float = 0.2  # [clip_range]
    anneal_clip: bool = False  # linear decay of clip_coef to 0, like anneal_lr
    clip_vloss: bool = False  # clip the value update around the old values, with clip_coef [clip_range_vf]
    norm_adv: bool = True  # [normalize_advantage]
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None  # stop an update before a minibatch whose approximate KL exceeds 1.5 x this
    net_arch: tuple[int, ...] = (64, 64)  # per tower (separate policy and value MLPs, like SB3's MlpPolicy)
    activation: str = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0  # Gaussian policies (Box actions)
    log_interval: int = 2048
    compile: bool = False  # torch.compile the minibatch loss and its backward (agent=ppo only)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints("agent.", num_steps=(self.num_steps, 1), batch_size=(self.batch_size, 1),
                   update_epochs=(self.update_epochs, 1))
        if self.clip_coef <= 0:
            raise ValueError(f"agent.clip_coef={self.clip_coef!r} is not valid: it must be > 0.")
        check_unit(gae_lambda=self.gae_lambda)
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"agent.target_kl={self.target_kl!r} is not valid: null (off) or a number > 0.")

    def check_rollout(self, num_envs: int) -> None:
        """ValueError unless a minibatch fits in the rollout of `num_envs` sub-envs."""
        rollout = self.num_steps * num_envs
        if self.batch_size > rollout:
            raise ValueError(f"agent.batch_size={self.batch_size} is larger than the rollout, agent.num_steps x "
                             f"env.num_envs = {self.num_steps} x {num_envs} = {rollout}; choose batch_size <= "
                             f"{rollout}.")
