"""What the off-policy agents (DQN, SAC) share besides their hyperparameters (ReplayConfig): an iteration of
`train_freq` vector env steps, and checkpoints that carry their step clock and, with agent.save_replay_buffer,
the replay buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.common.buffers import ReplayBuffer
    from agents.common.envs import EnvConfig
    from agents.common.hyperparameters import ReplayConfig


class ReplayAgent:
    """A mixin before RLModule: `class DQN(ReplayAgent, RLModule)`."""

    hp: ReplayConfig
    env_cfg: EnvConfig
    buffer: ReplayBuffer | None
    clock = ""  # the attribute counting what schedules the target updates (DQN: vector_steps, SAC: n_updates)

    @property
    def steps_per_iteration(self) -> int:
        return self.hp.train_freq * self.env_cfg.num_envs

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {self.clock: getattr(self, self.clock)}
        if self.hp.save_replay_buffer and self.buffer is not None:
            state["replay_buffer"] = self.buffer.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        setattr(self, self.clock, int(state.get(self.clock, 0)))
        if "replay_buffer" in state and self.buffer is not None:
            self.buffer.load_state_dict(state["replay_buffer"])
