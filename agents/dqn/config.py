"""DQN's hyperparameters (agent=dqn and agent=sb3_dqn): see agents.common.hyperparameters for the design."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.hyperparameters import ReplayConfig, check_unit
from lab.checks import check_ints

LOSSES = ("huber", "mse")


@dataclass(frozen=True, kw_only=True)
class DQNConfig(ReplayConfig):
    """SB3's DQN defaults and names, and the extensions SB3's DQN lacks (double_q ... loss)."""

    learning_rate: float = 1e-4
    batch_size: int = 32
    tau: float = 1.0  # 1: a hard copy every target_update_interval env steps; < 1: Polyak averaging
    target_update_interval: int = 10_000  # env steps
    train_freq: int = 4
    exploration_fraction: float = 0.1  # fraction of total_timesteps over which epsilon decays linearly
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0
    double_q: bool = False  # Double DQN targets
    dueling: bool = False  # dueling head
    n_step: int = 1  # n-step returns [SB3: n_steps]
    prioritized: bool = False  # proportional prioritized replay
    per_alpha: float = 0.6
    per_beta: float = 0.4  # importance-weight exponent, annealed linearly to 1 over the run
    loss: str = "huber"  # huber (SB3's smooth L1) | mse
    net_arch: tuple[int, ...] = (64, 64)
    activation: str = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints("agent.", n_step=(self.n_step, 1))
        if self.loss not in LOSSES:
            raise ValueError(f"agent.loss={self.loss!r} is not valid; valid choices: {', '.join(LOSSES)}.")
        check_unit(exploration_fraction=self.exploration_fraction, exploration_initial_eps=self.exploration_initial_eps,
                   exploration_final_eps=self.exploration_final_eps)
