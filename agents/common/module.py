"""What every agent shares: envs built in `setup`, the iteration loop, evaluation, metrics at env steps, state.

One Lightning training batch is one iteration of the algorithm (PPO: a rollout and its update epochs;
DQN: `train_freq` env steps and their gradient steps). One Lightning epoch is one evaluation period
(`eval_freq` env steps): it ends with `eval_episodes` evaluation episodes, then the checkpoint callbacks
run, so `checkpoints/last.ckpt` is never older than one evaluation period. Metrics are logged with the
env step as the step (W&B's x-axis `trainer/global_step`, the CSV's `step` column).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import Logger, WandbLogger

from agents.common.envs import EnvConfig, find_wrapper, finished_episodes, make_env
from agents.common.evaluate import evaluate, evaluation_metrics, video_files
from agents.common.spaces import encoded_space, normalization_mask, observation_parts
from agents.common.wrappers import NormalizeObservation, NormalizeReward
from lab.accel import skip_nvml_recount
from lab.checks import check_ints

log = logging.getLogger("lab")


class _Iterations:
    """The training 'dataloader': the iteration numbers of the current evaluation period."""

    def __init__(self, agent: RLModule) -> None:
        self.agent = agent

    def __len__(self) -> int:
        return self.agent.iterations_per_epoch

    def __iter__(self) -> Iterator[int]:
        a = self.agent
        end = min((a.iteration // a.iterations_per_epoch + 1) * a.iterations_per_epoch, a.total_iterations)
        return iter(range(a.iteration, end))


class RLModule(LightningModule):
    """Base class of our agents (not used on its own)."""

    def __init__(self, env: EnvConfig, total_timesteps: int, seed: int, gamma: float, eval_freq: int,
                 eval_episodes: int, eval_deterministic: bool, log_interval: int, video: bool,
                 torch_threads: int | None = None) -> None:
        super().__init__()
        check_ints("agent.", total_timesteps=(total_timesteps, 1), eval_freq=(eval_freq, 1), eval_episodes=(eval_episodes, 1),
                   log_interval=(log_interval, 1))
        if torch_threads is not None:
            check_ints("agent.", torch_threads=(torch_threads, 1))
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"agent.gamma={gamma!r} is not valid: it must be in [0, 1].")
        self.env_cfg = env
        self.total_timesteps, self.seed, self.gamma = total_timesteps, seed, gamma
        self.eval_freq, self.eval_episodes, self.eval_deterministic = eval_freq, eval_episodes, eval_deterministic
        self.log_interval, self.video = log_interval, video
        # Torch's intra-op threads while training (None: torch's default, one per core). Small MLP agents
        # run fastest on one: their ops are too small to split, and the threads' hand-offs cost more.
        self.torch_threads = torch_threads
        self._threads_before: int | None = None
        self.automatic_optimization = False
        self.envs: gym.vector.VectorEnv | None = None
        self.eval_envs: gym.vector.VectorEnv | None = None
        self.next_obs: np.ndarray | None = None
        # Counters and statistics that checkpoints carry.
        self.env_steps = 0  # over all DDP ranks
        self.iteration = 0
        self.world_size = 1  # DDP processes, each with its own envs (set by lab.run before fit)
        self.train_seconds = 0.0  # wall-clock of training so far, evaluations excluded
        self.episode_returns: deque[float] = deque(maxlen=100)
        self.episode_lengths: deque[int] = deque(maxlen=100)
        self.rng = np.random.default_rng(seed)  # the agent's own sampling (exploration, replay)
        self._last_log_step = 0
        self._clock: dict[str, float] = {}

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def steps_per_iteration(self) -> int:  # env steps (summed over sub-envs) per training batch
        raise NotImplementedError

    @property
    def global_steps_per_iteration(self) -> int:  # over all DDP ranks
        return self.steps_per_iteration * self.world_size

    @property
    def total_iterations(self) -> int:
        return math.ceil(self.total_timesteps / self.global_steps_per_iteration)

    @property
    def iterations_per_epoch(self) -> int:
        return max(1, round(self.eval_freq / self.global_steps_per_iteration))

    @property
    def num_epochs(self) -> int:
        return math.ceil(self.total_iterations / self.iterations_per_epoch)

    @property
    def progress_step(self) -> str:  # what lab.callbacks.EpochLines shows: env steps, the metrics' x-axis
        return f"env step {self.env_steps}"

    # ---- spaces and nets ---------------------------------------------------------------------------
    def check_env(self) -> None:
        """Raise ValueError when the env does not suit the agent (run before training). Subclasses extend."""
        obs_space, _ = self.env_cfg.spaces()
        observation_parts(obs_space)  # a space the agents can take
        if self.env_cfg.normalize_obs:
            normalization_mask(obs_space)  # something to normalize

    def observation_space(self) -> gym.Space:
        """The env's own single-env observation space (Dict, Discrete, ...: what the networks are built for)."""
        return self.env_cfg.spaces()[0]

    @property
    def action_space(self) -> gym.Space:
        """The env's single-env action space."""
        return self.env_cfg.spaces()[1]

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """Single-env (observation, action) spaces as the agent stores them: non-Box observations encoded as
        flat vectors (agents.common.spaces), after normalization."""
        if self.envs is not None:
            return self.envs.single_observation_space, self.envs.single_action_space
        obs_space, action_space = self.env_cfg.spaces()
        obs_space = encoded_space(obs_space)
        if self.env_cfg.normalize_obs:
            obs_space = gym.spaces.Box(-np.inf, np.inf, obs_space.shape, np.float32)
        return obs_space, action_space

    def build_networks(self) -> None:
        raise NotImplementedError

    def configure_model(self) -> None:
        self.build_networks()

    # ---- envs ---------------------------------------------------------------------------------------
    def env_seed(self, offset: int = 0) -> int:
        # distinct seeds for every sub-env of every DDP rank (and for evaluation, offset)
        return self.seed + offset + self.global_rank * self.env_cfg.num_envs

    def setup(self, stage: str) -> None:
        skip_nvml_recount()  # for runs that build their own Trainer, as lab.run does for every run
        if stage == "fit" and self.torch_threads is not None and self._threads_before is None:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.torch_threads)
        # Adam's second moments of tiny RL gradients turn denormal, which x86 CPUs compute ~100x slower
        # (measured: DQN CartPole 870 -> 1040 env steps/s); flushing them to zero changes no result here.
        torch.set_flush_denormal(True)
        if stage == "fit" and self.envs is None:
            self.envs = make_env(self.env_cfg, seed=self.env_seed(), gamma=self.gamma)
            self.next_obs, _ = self.envs.reset(seed=self.env_seed())

    def make_eval_env(self, video_dir: Path | None = None) -> gym.vector.VectorEnv:
        env = make_env(self.env_cfg, seed=self.env_seed(10_000), num_envs=min(self.eval_episodes, 8),
                       training=False, video_dir=video_dir)
        env.reset(seed=self.env_seed(10_000))
        return env

    def teardown(self, stage: str) -> None:
        if self._threads_before is not None:  # the process's thread count as it was (tests run many agents)
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        norm = find_wrapper(self.envs, NormalizeObservation) if self.envs is not None else None
        if norm is not None and self._saved_obs_rms is None:
            self._saved_obs_rms = norm.state_dict()  # the final evaluation runs after the training envs close
        for env in (self.envs, self.eval_envs):
            if env is not None:
                env.close()
        self.envs = self.eval_envs = None

    def sync_obs_normalization(self, target: gym.vector.VectorEnv) -> None:
        """Copy the training env's observation statistics into an evaluation env (frozen there)."""
        dst = find_wrapper(target, NormalizeObservation)
        src = find_wrapper(self.envs, NormalizeObservation) if self.envs is not None else None
        if dst is None:
            return
        if self._saved_obs_rms is not None:  # a policy loaded for evaluation brings its own statistics
            dst.load_state_dict(self._saved_obs_rms)
        elif src is not None:
            dst.load_state_dict(src.state_dict())

    _saved_obs_rms: dict[str, torch.Tensor] | None = None

    # ---- the loop -----------------------------------------------------------------------------------
    max_grad_norm: float | None = None  # set by the agents

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this inside `opt.step()`, after a 16-mixed grad scaler has unscaled the gradients:
        # clipping right after manual_backward would clip the scaled gradients (65,536x too large) instead.
        if not self.max_grad_norm:
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            # A fused optimizer (the presets' Adam) unscales inside its own step, so Lightning left the gradients
            # scaled: unscale them here (GradScaler then tells the fused step they are unscaled).
            scaler.unscale_(optimizer)
        # Not Lightning's clip_gradients: under mixed precision that refuses fused optimizers. torch's
        # clip_grad_norm_ arithmetic (total 2-norm; scale by max_norm / (norm + 1e-6), at most 1), without its
        # per-call grouping by device and dtype, which costs as much as the arithmetic for small nets.
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, (self.max_grad_norm / (norm + 1e-6)).clamp_(max=1.0))

    _direct_step = False  # set in on_train_start: see hooks_do_nothing

    def hooks_do_nothing(self) -> bool:
        """True when Lightning's per-step machinery around backward and optimizer.step would do nothing but
        count: one device, 32-bit precision (no grad scaler, no autocast), no profiler, and no callback or
        module override of the backward and optimizer-step hooks. Then `optimizer_step_on` calls torch
        directly (0.3-0.5 ms less per minibatch); DDP's gradient averaging, mixed precision and any user
        callback that hooks these steps take Lightning's path, unchanged."""
        from lightning.pytorch import Callback, LightningModule
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.profilers import PassThroughProfiler
        from lightning.pytorch.strategies import SingleDeviceStrategy

        trainer = self.trainer
        hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")
        if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
            return False
        if not isinstance(trainer.profiler, PassThroughProfiler):
            return False
        if any(getattr(type(cb), h) is not getattr(Callback, h) for cb in trainer.callbacks for h in hooks):
            return False
        own = {"on_before_optimizer_step": RLModule.on_before_optimizer_step}  # our clipping, called directly
        return all(getattr(type(self), h) is own.get(h, getattr(LightningModule, h))
                   for h in (*hooks, "backward", "optimizer_step", "optimizer_zero_grad"))

    def optimizer_step_on(self, loss: torch.Tensor, opt: Any) -> None:
        """zero_grad, backward, gradient clipping and the optimizer step for one minibatch's loss: through
        Lightning (`manual_backward`, `LightningOptimizer.step`) or, where its hooks would do nothing
        (`hooks_do_nothing`), straight to torch with the same clipping and the same step count."""
        if not self._direct_step:
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()  # clips the gradients first (on_before_optimizer_step)
            return
        optimizer = opt.optimizer
        optimizer.zero_grad()
        loss.backward()
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()  # what LightningOptimizer.step counts (trainer.global_step, checkpoints)
        self.on_before_optimizer_step(optimizer)
        optimizer.step()
        progress.increment_completed()

    def train_dataloader(self) -> _Iterations:
        return _Iterations(self)

    def on_train_start(self) -> None:
        self._direct_step = self.hooks_do_nothing()
        self._clock = {"start": time.perf_counter(), "eval": 0.0, "seconds0": self.train_seconds,
                       "steps0": self.env_steps}
        self._last_log_step = self.env_steps

    def record_episodes(self, infos: dict[str, Any]) -> None:
        for _, ret, length in finished_episodes(infos):
            self.episode_returns.append(ret)
            self.episode_lengths.append(length)

    def end_iteration(self, metrics: dict[str, float]) -> None:
        """Call at the end of each training_step: counters, logging every log_interval steps, evaluation."""
        self.iteration += 1
        c = self._clock
        self.train_seconds = c["seconds0"] + time.perf_counter() - c["start"] - c["eval"]
        last = self.iteration >= self.total_iterations
        if self.env_steps - self._last_log_step >= self.log_interval or last:
            self._last_log_step = self.env_steps
            elapsed = self.train_seconds - c["seconds0"]
            metrics = dict(metrics)
            metrics["time/sps"] = (self.env_steps - c["steps0"]) / max(elapsed, 1e-9)
            metrics["time/train_seconds"] = self.train_seconds
            if self.episode_returns:
                metrics["rollout/ep_return"] = float(np.mean(self.episode_returns))
                metrics["rollout/ep_len"] = float(np.mean(self.episode_lengths))
            self.log_at_env_step(metrics)
        if self.iteration % self.iterations_per_epoch == 0 or last:
            t0 = time.perf_counter()
            self.periodic_evaluation()
            c["eval"] += time.perf_counter() - t0

    def log_at_env_step(self, metrics: dict[str, float], show: bool = False) -> None:
        """Log to every logger with the env step as x-axis; `show` also puts them in callback_metrics
        (progress display, checkpoint monitor, final metrics)."""
        if self.trainer.is_global_zero:
            for lg in self.loggers:  # with the epoch and saved at once, as Lightning's own logging does
                lg.log_metrics({**metrics, "epoch": self.current_epoch}, step=self.env_steps)
                lg.save()
        for k, v in metrics.items():
            if show or k.startswith("eval/") or k in ("rollout/ep_return", "time/sps"):
                self.log(k, float(v), logger=False, on_step=True, on_epoch=False, batch_size=1)

    # ---- evaluation ---------------------------------------------------------------------------------
    def predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        raise NotImplementedError

    def evaluation_episodes(self, n_episodes: int, video_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns and lengths of `n_episodes` fresh evaluation episodes of the current policy."""
        if video_dir is not None:
            env = self.make_eval_env(video_dir)
        else:
            if self.eval_envs is None:
                self.eval_envs = self.make_eval_env()
            env = self.eval_envs
        self.sync_obs_normalization(env)
        was_training = self.training
        self.eval()
        try:
            return evaluate(self.predict, env, n_episodes, self.eval_deterministic)
        finally:
            self.train(was_training)
            if video_dir is not None:
                env.close()  # writes the video file

    def evaluate_policy(self, n_episodes: int, video_dir: Path | None = None) -> dict[str, float]:
        """eval/return (mean), eval/return_std, eval/ep_len over `n_episodes` fresh episodes."""
        return evaluation_metrics(*self.evaluation_episodes(n_episodes, video_dir))

    def periodic_evaluation(self) -> None:
        if self.world_size > 1:  # normalization statistics of every rank's data, before evaluation and checkpoint
            self.merge_normalization()
        returns, lengths = self.evaluation_episodes(self.eval_episodes)
        if self.world_size > 1:  # every rank evaluated its own episodes: statistics over all of them, on every rank
            returns, lengths = (self.trainer.strategy.all_gather(torch.as_tensor(a, device=self.device)).cpu().numpy()
                                .reshape(-1) for a in (returns, lengths))
        metrics = evaluation_metrics(returns, lengths)
        metrics["time/train_seconds"] = self.train_seconds
        self.log_at_env_step(metrics, show=True)

    def merge_normalization(self) -> None:
        """DDP: every process's observation/reward statistics become those of all processes' data."""
        for cls in (NormalizeObservation, NormalizeReward):
            wrapper = find_wrapper(self.envs, cls) if self.envs is not None else None
            if wrapper is not None:
                gathered = {k: self.trainer.strategy.all_gather(v.to(self.device)).cpu()
                            for k, v in wrapper.state_dict().items()}  # [world_size, ...] each
                wrapper.merge([{k: v[r] for k, v in gathered.items()} for r in range(self.world_size)])

    def final_evaluation(self, n_episodes: int, video_dir: Path | None, loggers: list[Logger]) -> dict[str, float]:
        """The run's closing evaluation (with a video when enabled), logged at the last env step."""
        metrics = self.evaluate_policy(n_episodes, video_dir if self.video else None)
        if self.global_rank == 0:
            for lg in loggers:
                lg.log_metrics(metrics, step=self.env_steps)
                if self.video and video_dir is not None and isinstance(lg, WandbLogger):
                    files = [str(p) for p in video_files(video_dir)]
                    if files:
                        lg.log_video("eval/video", files[-1:], step=self.env_steps)
                lg.save()
        return metrics

    # ---- state --------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific state for the checkpoint (e.g. the replay buffer). Subclasses extend."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {
            "env_steps": self.env_steps, "iteration": self.iteration, "train_seconds": self.train_seconds,
            "episode_returns": list(self.episode_returns), "episode_lengths": list(self.episode_lengths),
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "numpy_rng": {"state": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                          "pos": int(np.random.get_state()[2])},
            "python_rng": random.getstate(),
        }
        for key, cls in (("obs_rms", NormalizeObservation), ("return_rms", NormalizeReward)):
            wrapper = find_wrapper(self.envs, cls) if self.envs is not None else None
            if wrapper is not None:
                state[key] = wrapper.state_dict()
        state.update(self.extra_state())
        checkpoint["agent_state"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("agent_state")
        if state is None:
            raise ValueError("this checkpoint has no agent state: it was not written by one of the lab's agents.")
        self.env_steps, self.iteration = int(state["env_steps"]), int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        self.episode_returns.extend(state["episode_returns"])
        self.episode_lengths.extend(state["episode_lengths"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(("MT19937", state["numpy_rng"]["state"].numpy().astype(np.uint32),
                             state["numpy_rng"]["pos"], 0, 0.0))
        random.setstate(state["python_rng"])
        for key, cls in (("obs_rms", NormalizeObservation), ("return_rms", NormalizeReward)):
            wrapper = find_wrapper(self.envs, cls) if self.envs is not None else None
            if wrapper is not None and key in state:
                wrapper.load_state_dict(state[key])
        if self.envs is not None:  # continue with fresh episodes, seeded by where training stopped
            norm = find_wrapper(self.envs, NormalizeObservation)
            if norm is not None:
                norm.update = False  # the restored statistics stay exactly as saved
            self.next_obs, _ = self.envs.reset(seed=self.env_seed(self.iteration * 7919))
            if norm is not None:
                norm.update = True
        self.load_extra_state(state)

    def load_policy(self, ckpt_path: str | Path) -> None:
        """Weights and observation statistics of a checkpoint, for evaluation (counters untouched)."""
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if "agent_state" not in ckpt:
            raise ValueError(f"{ckpt_path} has no agent state: it was not written by one of the lab's agents.")
        self.build_networks()
        self.load_state_dict(ckpt["state_dict"])
        self._saved_obs_rms = ckpt["agent_state"].get("obs_rms")
        if self.envs is None and "env_steps" in ckpt["agent_state"] and self.env_steps == 0:
            self.env_steps = int(ckpt["agent_state"]["env_steps"])
