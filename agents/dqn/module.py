"""Deep Q-Network (Mnih et al., 2015) as a LightningModule, with the usual extensions as options.

One training_step = one iteration, read top to bottom: `train_freq` vector env steps with epsilon-greedy
actions into the replay buffer (updating the target network every `target_update_interval` env steps),
then `gradient_steps` TD updates once `learning_starts` env steps are collected. `train_freq`,
`gradient_steps` (-1: as many as env steps collected), `target_update_interval` and `tau` mean what they
mean in Stable-Baselines3's DQN. Extensions: double Q-learning, dueling head, n-step returns,
prioritized replay; the loss is Huber (SB3's smooth L1) or MSE, with gradient-norm clipping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from agents.common.buffers import ReplayBuffer
from agents.common.envs import EnvConfig, final_observations
from agents.common.module import RLModule
from agents.dqn.nets import QNetwork
from agents.dqn.schedules import linear_schedule
from lab.checks import check_ints


class DQN(RLModule):
    """DQN; `double_q`, `dueling`, `n_step`, `prioritized` turn on Double/Dueling/n-step/PER."""

    def __init__(
        self,
        env: EnvConfig,
        optimizer: Callable[..., torch.optim.Optimizer],
        total_timesteps: int = 100_000,
        seed: int = 0,
        learning_rate: float = 1e-4,
        anneal_lr: bool = False,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 32,
        gamma: float = 0.99,
        tau: float = 1.0,  # 1: hard copy every target_update_interval env steps; < 1: Polyak averaging
        target_update_interval: int = 10_000,
        train_freq: int = 4,
        gradient_steps: int = 1,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10.0,
        double_q: bool = False,
        dueling: bool = False,
        n_step: int = 1,
        prioritized: bool = False,
        per_alpha: float = 0.6,
        per_beta: float = 0.4,  # annealed linearly to 1 over the run
        loss: str = "huber",
        encoder: str = "auto",
        net_arch: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        save_replay_buffer: bool = False,
        eval_freq: int = 5000,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        log_interval: int = 1000,
        video: bool = True,
        torch_threads: int | None = None,
    ) -> None:
        super().__init__(env, total_timesteps, seed, gamma, eval_freq, eval_episodes, eval_deterministic,
                         log_interval, video, torch_threads)
        check_ints("agent.", buffer_size=(buffer_size, 1), batch_size=(batch_size, 1), train_freq=(train_freq, 1),
                   target_update_interval=(target_update_interval, 1), n_step=(n_step, 1),
                   learning_starts=(learning_starts, 0), gradient_steps=(gradient_steps, -1))
        if gradient_steps == 0:
            raise ValueError("agent.gradient_steps=0 is not valid: a positive number, or -1 for as many as env steps.")
        if batch_size > buffer_size:
            raise ValueError(f"agent.batch_size={batch_size} is larger than agent.buffer_size={buffer_size}.")
        if not 0 < tau <= 1:
            raise ValueError(f"agent.tau={tau!r} is not valid: it must be in (0, 1] (1 = hard target updates).")
        if loss not in ("huber", "mse"):
            raise ValueError(f"agent.loss={loss!r} is not valid; valid choices: huber, mse.")
        for key, value in (("exploration_fraction", exploration_fraction), ("exploration_initial_eps",
                           exploration_initial_eps), ("exploration_final_eps", exploration_final_eps)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"agent.{key}={value!r} is not valid: it must be in [0, 1].")
        self.save_hyperparameters(ignore=["env", "optimizer"])
        self.optimizer_factory = optimizer
        self.learning_rate, self.anneal_lr = learning_rate, anneal_lr
        self.buffer_size, self.learning_starts, self.batch_size = buffer_size, learning_starts, batch_size
        self.tau, self.target_update_interval = tau, target_update_interval
        self.train_freq, self.gradient_steps = train_freq, gradient_steps
        self.eps = (exploration_initial_eps, exploration_final_eps, exploration_fraction)
        self.max_grad_norm, self.double_q, self.n_step, self.loss_name = max_grad_norm, double_q, n_step, loss
        if not prioritized and (per_alpha, per_beta) != (0.6, 0.4):  # they would be silently ignored
            raise ValueError(f"agent.per_alpha={per_alpha!r} / agent.per_beta={per_beta!r} only act with prioritized "
                             "replay; set agent.prioritized=true, or leave them at 0.6 / 0.4.")
        self.prioritized, self.per_alpha, self.per_beta = prioritized, per_alpha, per_beta
        self.net_kwargs = dict(net_arch=list(net_arch), activation=activation, encoder=encoder, dueling=dueling)
        self.save_replay_buffer = save_replay_buffer
        self.q_net: QNetwork | None = None
        self.q_target: QNetwork | None = None
        self.buffer: ReplayBuffer | None = None
        self.vector_steps = 0  # env.step calls, SB3's clock for target updates

    @property
    def steps_per_iteration(self) -> int:
        return self.train_freq * self.env_cfg.num_envs

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
        return self.optimizer_factory(self.q_net.parameters(), lr=self.learning_rate)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.buffer is None:
            obs_space, _ = self.spaces()
            self.buffer = ReplayBuffer(self.buffer_size, self.env_cfg.num_envs, obs_space.shape, obs_space.dtype,
                                       prioritized=self.prioritized, alpha=self.per_alpha)

    def epsilon(self) -> float:
        start, end, fraction = self.eps
        return linear_schedule(start, end, fraction, self.env_steps, self.total_timesteps)

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
        if self.tau >= 1.0:  # a hard copy (what load_state_dict does, without its key matching: 10x faster)
            torch._foreach_copy_(list(self.q_target.parameters()), list(self.q_net.parameters()))
        else:
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q_net.parameters()), self.tau)

    def training_step(self, batch: int, batch_idx: int) -> None:
        opt = self.optimizers()
        envs, buf = self.envs, self.buffer
        start = int(self.action_space.start)

        # 1. Collect train_freq vector steps into the replay buffer.
        for _ in range(self.train_freq):
            obs = self.next_obs
            actions = self.predict_index(obs, deterministic=False)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions + start if start else actions)
            real_next = final_observations(next_obs, infos, terminated | truncated)
            buf.add(obs, real_next, actions, rewards, terminated, truncated)
            self.record_episodes(infos)
            self.next_obs = next_obs
            self.env_steps += self.env_cfg.num_envs * self.world_size
            self.vector_steps += 1
            if self.vector_steps % max(self.target_update_interval // self.env_cfg.num_envs, 1) == 0:
                self.update_target()

        # 2. Gradient steps, once warm.
        metrics: dict[str, Any] = {"train/epsilon": self.epsilon()}
        if self.env_steps > self.learning_starts:
            progress = max(1.0 - self.env_steps / self.total_timesteps, 0.0)
            for group in opt.param_groups:
                group["lr"] = self.learning_rate * (progress if self.anneal_lr else 1.0)
            beta = self.per_beta + (1.0 - self.per_beta) * (1.0 - progress)
            n_updates = self.gradient_steps if self.gradient_steps > 0 else self.steps_per_iteration
            batches = self.sample_batches(n_updates, beta)
            losses, qs = [], []
            for b in batches:
                q = self.q_net(b["obs"]).gather(-1, b["action_index"]).squeeze(-1)
                loss_fn = F.smooth_l1_loss if self.loss_name == "huber" else F.mse_loss
                if self.prioritized:  # importance weights
                    loss = (b["weights"] * loss_fn(q, b["target"], reduction="none")).mean()
                else:  # uniform replay: weights of 1, the plain mean
                    loss = loss_fn(q, b["target"])
                self.optimizer_step_on(loss, opt)  # clips the gradients first (RLModule.on_before_optimizer_step)
                if self.prioritized:
                    self.buffer.update_priorities(b["index"], (b["target"] - q).detach().cpu().numpy())
                losses.append(loss.detach())
                qs.append(q.detach().mean())
            loss_mean, q_mean = torch.stack([torch.stack(losses).mean(), torch.stack(qs).mean()]).tolist()
            metrics["train/loss"], metrics["train/q_values"] = loss_mean, q_mean
            metrics["train/learning_rate"] = opt.param_groups[0]["lr"]
        self.end_iteration(metrics)

    @torch.no_grad()
    def td_targets(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """r + discount * max_a Q_target(s', a), or Q_target(s', argmax_a Q(s', a)) with double_q."""
        q_next_target = self.q_target(b["next_obs"])
        if self.double_q:  # online net picks, target net evaluates (van Hasselt et al., 2016)
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
        if self.prioritized or self.double_q:
            for _ in range(n):
                sample = self.buffer.sample(self.batch_size, self.rng, self.gamma, self.n_step, beta)
                b = {k: torch.as_tensor(v, device=self.device) for k, v in sample.items() if k != "index"}
                b["target"], b["index"] = self.td_targets(b), sample["index"]
                b["action_index"] = b["actions"].long().unsqueeze(-1)
                yield b
            return
        sample = self.buffer.sample(n * self.batch_size, self.rng, self.gamma, self.n_step, beta)
        b = {k: torch.as_tensor(sample[k], device=self.device) for k in ("obs", "actions", "returns", "discounts",
                                                                         "next_obs")}
        batch = {"obs": b["obs"], "action_index": b["actions"].long().unsqueeze(-1), "target": self.td_targets(b)}
        for i in range(n):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield {k: v[rows] for k, v in batch.items()}

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"vector_steps": self.vector_steps}
        if self.save_replay_buffer and self.buffer is not None:
            state["replay_buffer"] = self.buffer.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.vector_steps = int(state.get("vector_steps", 0))
        if "replay_buffer" in state and self.buffer is not None:
            self.buffer.load_state_dict(state["replay_buffer"])
