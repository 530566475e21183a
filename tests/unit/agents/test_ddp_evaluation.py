"""Under DDP every process evaluates its own episodes; the logged statistics are those of all episodes."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.common.envs import EnvConfig
from agents.ppo import PPO


class TwoRanks:
    """A stand-in for the DDP strategy: all_gather stacks this rank's tensor with the other rank's."""

    def __init__(self, other: dict[int, torch.Tensor]) -> None:
        self.other = other

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t, self.other[t.dtype.is_floating_point]])


def test_eval_return_std_is_over_every_episode_of_every_process():
    agent = PPO(EnvConfig("CartPole-v1", num_envs=2), torch.optim.Adam, num_steps=8, batch_size=8, eval_episodes=2)
    agent.world_size = 2
    agent.merge_normalization = lambda: None
    agent.evaluation_episodes = lambda n: (np.array([1.0, 2.0]), np.array([1, 2]))  # this rank's episodes
    agent._trainer = SimpleNamespace(strategy=TwoRanks({True: torch.tensor([5.0, 9.0], dtype=torch.float64),
                                                        False: torch.tensor([5, 9])}))
    logged = {}
    agent.log_at_env_step = lambda metrics, show=False: logged.update(metrics)
    agent.periodic_evaluation()
    assert logged["eval/return"] == pytest.approx(4.25)
    assert logged["eval/return_std"] == pytest.approx(np.std([1.0, 2.0, 5.0, 9.0]))  # 3.1125, not 1.25
    assert logged["eval/ep_len"] == pytest.approx(4.25)
