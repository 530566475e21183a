"""Deep Q-Network (Mnih et al., 2015) as a LightningModule, with the usual extensions as options.

One training_step = one iteration, read top to bottom: `train_freq` vector env steps with epsilon-greedy
actions into the replay buffer (updating the target network every `target_update_interval` env steps),
then `gradient_steps` TD updates once `learning_starts` env steps are collected. `train_freq`,
`gradient_steps` (-1: as many as env steps collected), `target_update_interval` and `tau` mean what they
mean in Stable-Baselines3's DQN. Extensions: double Q-learning, dueling head, n-step returns,
prioritized replay; the loss is Huber (SB3's smooth L1) or MSE, with gradient-norm clipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from agents.common.buffers import ReplayBuffer
from agents.common.envs import EnvConfig, final_observations
from agents.common.hyperparameters import keyword_init
from agents.common.module import OptimizerFactory, RLModule
from agents.common.replay import ReplayAgent
from agents.dqn.config import DQNConfig
from agents.dqn.nets import QNetwork
from agents.dqn.schedules import linear_schedule


class DQN(ReplayAgent, RLModule):
    """DQN; `double_q`, `dueling`, `n_step`, `prioritized` turn on Double/Dueling/n-step/PER."""

    __init__ = keyword_init(DQNConfig, "env", "optimizer")
    clock = "vector_steps"  # ReplayAgent: checkpoints carry it
    hp: DQNConfig

    def initialize(self, env: EnvConfig, optimizer: OptimizerFactory, hp: DQNConfig) -> None:
        plain = (DQNConfig.per_alpha, DQNConfig.per_beta)
        if not hp.prioritized and (hp.per_alpha, hp.per_beta) != plain:  # they would be silently ignored
            raise ValueError(f"agent.per_alpha={hp.per_alpha!r} / agent.per_beta={hp.per_beta!r} only act with "
                             f"prioritized replay; set agent.prioritized=true, or leave them at {plain[0]} / {plain[1]}.")
        super().initialize(env, optimizer, hp)
        self.max_grad_norm = hp.max_grad_norm
        self.net_kwargs = dict(net_arch=list(hp.net_arch), activation=hp.activation, encoder=hp.encoder,
                               dueling=hp.dueling)
        self.q_net: QNetwork | None = None
        self.q_target: QNetwork | None = None
        self.buffer: ReplayBuffer | None = None
        self.vector_steps = 0  # env.step calls, SB3's clock for target updates

    def check_env(self) -> None:
        super().check_env()
        _, action_space = self.spaces()
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"DQN needs a Discrete action space; env.id={self.env_cfg.id!r} has {action_space}. "
                             "Use agent=ppo (Box, MultiDiscrete, MultiBinary actions) or agent=sac (Box).")
        QNetwork(self.observation_space(), int(action_space.n), **self.net_kwargs)  # spaces and encoder checks

    def build_networks(self) -> None:
        if self.q_net is None:
            n = int(self.action_space.n)
            self.q_net = QNetwork(self.observation_space(), n, **self.net_kwargs)
            self.q_target = QNetwork(self.observation_space(), n, **self.net_kwargs)
            self.q_target.load_state_dict(self.q_net.state_dict())
            self.q_target.requires_grad_(False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.q_net.parameters(), lr=self.hp.learning_rate)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.buffer is None:
            obs_space, _ = self.spaces()
            self.buffer = ReplayBuffer(self.hp.buffer_size, self.env_cfg.num_envs, obs_space.shape, obs_space.dtype,
                                       prioritized=self.hp.prioritized, alpha=self.hp.per_alpha)

    def epsilon(self) -> float:
        hp = self.hp
        return linear_schedule(hp.exploration_initial_eps, hp.exploration_final_eps, hp.exploration_fraction,
                               self.env_steps, hp.total_timesteps)

    @torch.inference_mode()
    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Greedy actions; epsilon-greedy (per sub-env) unless deterministic."""
        start = int(self.action_space.start)  # Discrete(n, start): actions start + 0 .. start + n-1
        index = self.predict_index(obs, deterministic)
        return index + start if start else index

    @torch.inference_mode()
    def predict_index(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Action indices (0 .. n-1): greedy, or epsilon-greedy (per sub-env) unless deterministic."""
        if deterministic:
            return self.q_net(torch.as_tensor(obs, device=self.device)).argmax(-1).cpu().numpy()
        n = len(obs)
        explore = self.rng.random(n) < self.epsilon()
        # the Q-network's width, not self.envs: the final evaluation and mode=eval run after the training envs close
        random_actions = self.rng.integers(0, self.q_net.advantage.out_features, n)
        if explore.all():  # no need for Q-values (most steps early in training)
            return random_actions
        greedy = self.q_net(torch.as_tensor(obs, device=self.device)).argmax(-1).cpu().numpy()
        return np.where(explore, random_actions, greedy)

    @torch.no_grad()  # the target stays a leaf without gradients: in-place copies from q_net would join its graph
    def update_target(self) -> None:
        if self.hp.tau >= 1.0:  # a hard copy (what load_state_dict does, without its key matching: 10x faster)
            torch._foreach_copy_(list(self.q_target.parameters()), list(self.q_net.parameters()))
        else:
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q_net.parameters()), self.hp.tau)

    def training_step(self, batch: int, batch_idx: int) -> None:
        self.collect()
        metrics: dict[str, Any] = {"train/epsilon": self.epsilon()}
        if self.env_steps > self.hp.learning_starts:  # gradient steps, once warm
            metrics.update(self.td_updates())
        self.end_iteration(metrics)

    def collect(self) -> None:
        """train_freq vector steps with epsilon-greedy actions into the replay buffer, updating the target
        network every target_update_interval env steps."""
        start = int(self.action_space.start)
        n_envs = self.env_cfg.num_envs
        for _ in range(self.hp.train_freq):
            obs = self.next_obs
            actions = self.predict_index(obs, deterministic=False)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions + start if start else actions)
            real_next = final_observations(next_obs, infos, terminated | truncated)
            self.buffer.add(obs, real_next, actions, rewards, terminated, truncated)
            self.record_episodes(infos)
            self.next_obs = next_obs
            self.env_steps += n_envs * self.world_size
            self.vector_steps += 1
            if self.vector_steps % max(self.hp.target_update_interval // n_envs, 1) == 0:
                self.update_target()

    def td_updates(self) -> dict[str, float]:
        """The iteration's TD updates (gradient_steps of them; -1: as many as env steps collected); their metrics."""
        opt = self.optimizers()
        lr = self.set_lr(opt)
        beta = self.hp.per_beta + (1.0 - self.hp.per_beta) * (1.0 - self.progress_remaining())
        n_updates = self.hp.gradient_steps if self.hp.gradient_steps > 0 else self.steps_per_iteration
        loss_fn = F.smooth_l1_loss if self.hp.loss == "huber" else F.mse_loss
        losses, qs = [], []
        for b in self.sample_batches(n_updates, beta):
            q = self.q_net(b["obs"]).gather(-1, b["action_index"]).squeeze(-1)
            if self.hp.prioritized:  # importance weights
                loss = (b["weights"] * loss_fn(q, b["target"], reduction="none")).mean()
            else:  # uniform replay: weights of 1, the plain mean
                loss = loss_fn(q, b["target"])
            self.optimizer_step_on(loss, opt)  # clips the gradients first (on_before_optimizer_step)
            if self.hp.prioritized:
                self.buffer.update_priorities(b["index"], (b["target"] - q).detach().cpu().numpy())
            losses.append(loss.detach())
            qs.append(q.detach().mean())
        loss_mean, q_mean = torch.stack([torch.stack(losses).mean(), torch.stack(qs).mean()]).tolist()
        return {"train/loss": loss_mean, "train/q_values": q_mean, "train/learning_rate": lr}

    @torch.no_grad()
    def td_targets(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """r + discount * max_a Q_target(s', a), or Q_target(s', argmax_a Q(s', a)) with double_q."""
        q_next_target = self.q_target(b["next_obs"])
        if self.hp.double_q:  # online net picks, target net evaluates (van Hasselt et al., 2016)
            best = self.q_net(b["next_obs"]).argmax(-1, keepdim=True)
            q_next = q_next_target.gather(-1, best).squeeze(-1)
        else:
            q_next = q_next_target.max(-1).values
        return b["returns"] + b["discounts"] * q_next

    def sample_batches(self, n: int, beta: float) -> Iterator[dict[str, torch.Tensor]]:
        """The iteration's `n` minibatches, each with its TD target.

        The replay buffer and the target network stay fixed during an iteration's gradient steps, so with
        uniform replay all `n` batches are drawn at once (the same random numbers, in the same order, as
        `n` draws of one batch) and their targets come from one target-network forward pass. Prioritized
        replay changes the sampling distribution after every step, and double Q-learning's targets use the
        online network as it is at that step: both draw and compute per step.
        """
        if self.hp.prioritized or self.hp.double_q:
            for _ in range(n):
                sample = self.buffer.sample(self.hp.batch_size, self.rng, self.hp.gamma, self.hp.n_step, beta)
                b = {k: torch.as_tensor(v, device=self.device) for k, v in sample.items() if k != "index"}
                b["target"], b["index"] = self.td_targets(b), sample["index"]
                b["action_index"] = b["actions"].long().unsqueeze(-1)
                yield b
            return
        batch_size = self.hp.batch_size
        sample = self.buffer.sample(n * batch_size, self.rng, self.hp.gamma, self.hp.n_step, beta)
        b = {k: torch.as_tensor(sample[k], device=self.device) for k in ("obs", "actions", "returns", "discounts",
                                                                         "next_obs")}
        batch = {"obs": b["obs"], "action_index": b["actions"].long().unsqueeze(-1), "target": self.td_targets(b)}
        for i in range(n):
            rows = slice(i * batch_size, (i + 1) * batch_size)
            yield {k: v[rows] for k, v in batch.items()}
