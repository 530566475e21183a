"""What the Stable-Baselines3 baselines share: envs from the lab's own `env_fns` (so training and
evaluation envs are the lab agents' envs, with the env's raw observations: SB3 encodes them itself), the
policy chosen from the observation space as SB3's users choose it, the action space checked against the
algorithm's, SB3's log keys under the lab's names, evaluation every `eval_freq` env steps (excluded from
`time/train_seconds`), checkpoints, and their runner."""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from agents.common.envs import EnvConfig, env_fns, make_env
from agents.common.evaluate import evaluate, evaluation_lines, evaluation_metrics, video_files
from agents.common.hyperparameters import AgentConfig, ReplayConfig, RunKeys
from agents.common.runner import build_env_and_agent
from agents.common.spaces import ENCODERS
from lab.checks import check_choice
from lab.contracts import RunContext, Runner
from lab.layout import RunLayout

# The action spaces each algorithm passes to SB3 as `supported_action_spaces` (SB3 asserts them once the
# model is built; the lab checks them before): tests/unit/agents/test_sb3.py pins this table to SB3's own.
_ALL_ACTIONS = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "A2C": _ALL_ACTIONS, "PPO": _ALL_ACTIONS, "DQN": (spaces.Discrete,), "SAC": (spaces.Box,), "TD3": (spaces.Box,),
    "DDPG": (spaces.Box,)}
OBS_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)  # and a Dict of them
NATURE_MIN_SIZE = 36  # SB3's NatureCNN (8x8/4, 4x4/2, 3x3/1 convolutions) needs images of at least 36x36

# SB3's log keys -> the lab's (the same names our agents log). A2C's policy loss is PPO's pg_loss; the
# off-policy algorithms' train/loss (DQN), train/actor_loss, train/critic_loss, train/ent_coef(_loss) (SAC,
# TD3, DDPG) and train/learning_rate are the lab's names already (agent=dqn's, agent=sac's).
RENAME = {"rollout/ep_rew_mean": "rollout/ep_return", "rollout/ep_len_mean": "rollout/ep_len",
          "time/fps": "time/sps", "train/policy_gradient_loss": "train/pg_loss", "train/policy_loss": "train/pg_loss",
          "train/value_loss": "train/v_loss", "rollout/exploration_rate": "train/epsilon"}


def _image_hw(space: spaces.Box) -> tuple[int, int]:
    """(height, width) of an SB3 image space: the channels are its smallest dimension, first or last."""
    shape = space.shape
    return (shape[1], shape[2]) if is_image_space_channels_first(space) else (shape[0], shape[1])


def _image_keys(space: spaces.Dict) -> list[str]:
    return [k for k, sub in space.spaces.items() if is_image_space(sub)]


def check_observation_space(space: gym.Space, env_id: str) -> None:
    """ValueError unless SB3's policies take `space`: Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of them."""
    if isinstance(space, spaces.Tuple):
        raise ValueError(f"env.id={env_id!r} has Tuple observations ({space}), which Stable-Baselines3 does not "
                         "support: its policies take Box, Discrete, MultiDiscrete and MultiBinary observations and "
                         "Dict observations of those. Use the lab's own agents, agent=ppo or agent=dqn, which take "
                         "Tuple observations (each part encoded, as SB3 encodes a Dict's), or wrap the env so that "
                         "it returns a Dict.")
    if isinstance(space, spaces.Dict):
        bad = {k: sub for k, sub in space.spaces.items() if not isinstance(sub, OBS_SPACES)}
        if bad:
            raise ValueError(f"env.id={env_id!r} has Dict observations whose key(s) {', '.join(map(repr, bad))} "
                             f"hold {', '.join(map(str, bad.values()))}: Stable-Baselines3 takes a Dict of Box, "
                             "Discrete, MultiDiscrete and MultiBinary spaces only (no nested Dict or Tuple). Use "
                             "agent=ppo or agent=dqn, the lab's own agents, which encode nested spaces.")
        return
    if not isinstance(space, OBS_SPACES):
        raise ValueError(f"env.id={env_id!r} has {type(space).__name__} observations ({space}), which "
                         "Stable-Baselines3 does not support: its policies take Box, Discrete, MultiDiscrete, "
                         "MultiBinary and Dict observations.")


def check_policy(space: gym.Space, policy: str, setting: str, env_id: str) -> None:
    """ValueError unless SB3's `policy` (MlpPolicy | CnnPolicy | MultiInputPolicy) can be built on `space`;
    `setting` names the key that chose it (e.g. "agent.encoder='cnn'")."""
    where = f"the observation space {space} of env.id={env_id!r}"
    if isinstance(space, spaces.Dict):
        if policy != "MultiInputPolicy":
            raise ValueError(f"{setting} gives SB3's {policy}, which cannot take Dict observations ({where}); "
                             "SB3's MultiInputPolicy does: set agent.encoder=auto (or agent.policy=MultiInputPolicy "
                             "with agent=sb3).")
        images = {k: space.spaces[k] for k in _image_keys(space)}
    elif policy == "MultiInputPolicy":
        raise ValueError(f"{setting}: SB3's MultiInputPolicy takes Dict observations only, not {where}; use "
                         "agent.policy=auto.")
    elif policy == "CnnPolicy":
        if not is_image_space(space):
            raise ValueError(f"{setting} gives SB3's CnnPolicy, which needs image observations (a 3-dimensional "
                             f"uint8 Box with bounds 0 and 255, channels first or last), not {where}; use "
                             "agent.encoder=auto or mlp.")
        images = {"": space}
    else:
        return
    for key, image in images.items():
        h, w = _image_hw(image)
        if min(h, w) < NATURE_MIN_SIZE:
            part = f"the image under {key!r}" if key else "the image"
            raise ValueError(f"SB3's {policy} encodes images with the Nature CNN, which needs images of at least "
                             f"{NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}; {part} of {where} is {h}x{w}. Use agent=ppo or "
                             "agent=dqn (the lab's agents, whose encoder=auto takes a small CNN for small images)"
                             + (", or agent.encoder=mlp (SB3's MlpPolicy on the flattened, scaled image)."
                                if not key else ", or make the env give larger images."))


def choose_policy(space: gym.Space, encoder: str, env_id: str) -> str:
    """SB3's policy for `space` as SB3's users choose it, under agent.encoder: auto gives MultiInputPolicy for
    Dict observations, CnnPolicy for images (SB3's is_image_space), MlpPolicy otherwise (SB3 one-hot encodes
    Discrete and MultiDiscrete itself); mlp gives MlpPolicy; cnn and nature_cnn give CnnPolicy (SB3's is the
    Nature CNN), or MultiInputPolicy for a Dict with images."""
    check_observation_space(space, env_id)
    setting = f"agent.encoder={encoder!r}"
    if isinstance(space, spaces.Dict):
        if encoder in ("cnn", "nature_cnn") and not _image_keys(space):
            raise ValueError(f"{setting} needs image observations, but the Dict observations {space} of "
                             f"env.id={env_id!r} hold no image (a 3-dimensional uint8 Box with bounds 0 and 255); use "
                             "agent.encoder=auto.")
        policy = "MlpPolicy" if encoder == "mlp" else "MultiInputPolicy"
    elif encoder == "auto":
        policy = "CnnPolicy" if is_image_space(space) else "MlpPolicy"
    else:
        policy = "MlpPolicy" if encoder == "mlp" else "CnnPolicy"
    check_policy(space, policy, setting, env_id)
    return policy


def uses_cnn(space: gym.Space, policy: str) -> bool:
    """Whether SB3's `policy` on `space` runs a CNN (which a GPU speeds up; MLPs run faster on the CPU)."""
    return policy == "CnnPolicy" or (policy == "MultiInputPolicy" and isinstance(space, spaces.Dict)
                                     and bool(_image_keys(space)))


def check_action_space(algo: str, space: gym.Space, env_id: str) -> None:
    """ValueError naming the space and the valid ones unless SB3's `algo` takes `space` as actions."""
    valid = ACTION_SPACES[algo]
    if isinstance(space, valid):
        return
    others = [name for name, kinds in ACTION_SPACES.items() if isinstance(space, kinds)]
    hint = (f"SB3's algorithms that take it: {', '.join(others)} (agent=sb3 agent.algo=<name>)." if others
            else "No Stable-Baselines3 algorithm takes it.")
    raise ValueError(f"Stable-Baselines3's {algo} supports {', '.join(k.__name__ for k in valid)} action spaces; "
                     f"env.id={env_id!r} has {space}. {hint}")


def norm_obs_keys(space: gym.Space, env_id: str) -> list[str] | None:
    """VecNormalize's `norm_obs_keys` for env.normalize_obs=true: a Dict's non-image Box keys (images are
    scaled by 1/255 by SB3's policies, discrete parts one-hot encoded); None for a Box (the whole of it).
    ValueError when nothing is left to normalize."""
    if isinstance(space, spaces.Dict):
        keys = [k for k, sub in space.spaces.items() if isinstance(sub, spaces.Box) and not is_image_space(sub)]
        if keys:
            return keys
        what = f"Dict observations {space} that hold no Box but images and discrete parts"
    elif isinstance(space, spaces.Box) and not is_image_space(space):
        return None
    else:
        what = f"{'image' if is_image_space(space) else 'discrete'} observations ({space})"
    raise ValueError(f"env.normalize_obs=true: env.id={env_id!r} has {what}, and SB3 normalizes none of those (it "
                     "scales images by 1/255 and one-hot encodes discrete observations itself): there is nothing to "
                     "normalize. Set env.normalize_obs=false.")


class _ToLabLoggers(KVWriter):
    """SB3's logger output, every `log_interval` env steps, to the lab's loggers. With `clock` (the training
    seconds so far, evaluations excluded), time/sps is counted as our agents count it: SB3's fps includes the
    time its callbacks take, the evaluations among them."""

    def __init__(self, loggers: list[Logger], log_interval: int,
                 clock: Callable[[], float | None] | None = None) -> None:
        self.loggers, self.log_interval, self.clock = loggers, log_interval, clock
        self.last_step: int | None = None

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        if self.last_step is not None and step - self.last_step < self.log_interval:
            return
        self.last_step = step
        metrics = {RENAME.get(k, k): float(v) for k, v in key_values.items()
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
        if "train/entropy_loss" in metrics:
            metrics["train/entropy"] = -metrics.pop("train/entropy_loss")
        seconds = self.clock() if self.clock is not None else None
        if seconds and "time/sps" in metrics:
            metrics["time/sps"], metrics["time/train_seconds"] = step / seconds, seconds
        for lg in self.loggers:
            lg.log_metrics(metrics, step=step)

    def close(self) -> None:
        pass


class _EvalAndCheckpoint(BaseCallback):
    """Evaluation every eval_freq env steps, excluded from the training clock; last and best checkpoints."""

    def __init__(self, agent: SB3Agent, loggers: list[Logger], run: RunLayout) -> None:
        super().__init__()
        self.agent, self.loggers, self.run = agent, loggers, run
        self.best = -np.inf
        self.eval_seconds = 0.0
        self.t0: float | None = None

    def train_seconds(self) -> float | None:
        """Seconds since training started, evaluations excluded (None before it starts)."""
        return None if self.t0 is None else time.perf_counter() - self.t0 - self.eval_seconds

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        self.next_eval = self.agent.hp.eval_freq
        self.eval_env = self.agent.make_eval_env(self.agent.eval_episodes)

    def _on_training_end(self) -> None:
        self.eval_env.close()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.agent.hp.eval_freq
        start = time.perf_counter()
        metrics = self.agent.evaluate_policy(self.model, self.agent.eval_episodes, self.eval_env)
        metrics["time/train_seconds"] = start - self.t0 - self.eval_seconds
        for lg in self.loggers:
            lg.log_metrics(metrics, step=self.num_timesteps)
            lg.save()
        self.agent.save(self.model, self.run.sb3_last)
        if metrics["eval/return"] > self.best:
            self.best = metrics["eval/return"]
            self.agent.save(self.model, self.run.sb3_best)
        self.eval_seconds += time.perf_counter() - start
        return True


def linear(start: float, anneal: bool) -> float | Callable[[float], float]:
    """A constant, or zoo's lin_<start>: start x progress_remaining."""
    return (lambda progress: start * progress) if anneal else start


def optimizer_kwargs(optimizer: Callable[..., torch.optim.Optimizer]) -> dict[str, Any]:
    """The `_partial_` optimizer node as SB3's optimizer_class / optimizer_kwargs."""
    return {"optimizer_class": optimizer.func, "optimizer_kwargs": dict(optimizer.keywords)}


class SB3Agent(RunKeys):
    """Base of the SB3 baselines: subclasses set `algorithm` and `kwargs` (SB3's names for the lab's keys), and
    take their keys through a generated constructor (agents.common.hyperparameters).

    SB3 is given the env's raw observations (`encode_obs=False`, where the lab's agents get them encoded),
    the policy that suits them (`choose_policy`, set by `check_env` before anything is built), and, with
    env.normalize_obs, SB3's VecNormalize on the Box parts. Evaluation envs are made without normalization:
    the policy normalizes their observations with the training VecNormalize's statistics (or a checkpoint's
    `*.vecnormalize.pkl`), as SB3's VecNormalize.normalize_obs does, so any observation space evaluates.
    """

    algorithm: type[BaseAlgorithm]

    def initialize(self, env: EnvConfig, hp: AgentConfig, gamma: float, encoder: str) -> None:
        """The subclasses' generated constructors (agents.common.hyperparameters.keyword_init) call their
        `initialize`, which calls this one with the discount and encoder the algorithm uses."""
        check_choice("agent.encoder", encoder, ENCODERS)
        self.hp, self.env_cfg, self.gamma, self.encoder = hp, env, gamma, encoder
        self.video = hp.video
        self.policy: str | None = None  # SB3's policy name: chosen from the observation space by check_env
        self.device: str | None = None  # None: SB3's advice, the CPU for MLP policies and "auto" for CNNs
        self.kwargs: dict[str, Any] = {}
        self.mlp_policy_kwargs: dict[str, Any] = {}  # policy_kwargs for every policy but CnnPolicy (net_arch)
        self.loaded_normalizer: VecNormalize | None = None  # a loaded checkpoint's observation statistics
        self._uses_cnn = False

    @property
    def algo_name(self) -> str:
        return self.algorithm.__name__

    def choose_policy(self, obs_space: gym.Space) -> str:
        return choose_policy(obs_space, self.encoder, self.env_cfg.id)

    def set_policy(self, obs_space: gym.Space) -> None:
        self.policy = self.choose_policy(obs_space)
        self._uses_cnn = uses_cnn(obs_space, self.policy)

    def check_env(self) -> None:
        """The env's spaces against SB3's and the algorithm's, before anything is built; sets the policy."""
        obs_space, action_space = self.env_cfg.spaces()
        self.set_policy(obs_space)
        check_action_space(self.algo_name, action_space, self.env_cfg.id)
        if self.env_cfg.normalize_obs:
            norm_obs_keys(obs_space, self.env_cfg.id)

    def model_device(self) -> str:
        if self.policy is None:  # check_env has not run (or a subclass's own did not set it)
            self.set_policy(self.env_cfg.spaces()[0])
        if self.device is not None:  # trainer.accelerator, set by the runner
            return self.device
        return "auto" if self._uses_cnn else "cpu"  # SB3's advice: MLP policies on the CPU

    def make_vec_env(self) -> VecEnv:
        """The lab's sub-envs (every per-episode wrapper, frame stacking included; raw observations) in SB3's
        vector env, with SB3's own VecNormalize for normalization."""
        c = self.env_cfg
        vec_cls = SubprocVecEnv if c.vectorization == "async" else DummyVecEnv
        venv: VecEnv = vec_cls(env_fns(c, training=True, clip_actions=False))
        venv.seed(self.hp.seed)  # sub-env i: seed + i, as make_env seeds ours
        if c.normalize_obs or c.normalize_reward:
            keys = norm_obs_keys(venv.observation_space, c.id) if c.normalize_obs else None
            venv = VecNormalize(venv, norm_obs=c.normalize_obs, norm_reward=c.normalize_reward, clip_obs=c.clip_obs,
                                clip_reward=c.clip_reward, gamma=self.gamma, norm_obs_keys=keys)
        return venv

    def save(self, model: BaseAlgorithm, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        vec_normalize = model.get_vec_normalize_env()  # under SB3's VecTransposeImage, for channel-last images
        if vec_normalize is not None:
            vec_normalize.save(str(path.with_suffix(".vecnormalize.pkl")))

    def obs_normalizer(self, model: BaseAlgorithm) -> VecNormalize | None:
        """What normalizes evaluation observations: the training VecNormalize, or a loaded checkpoint's."""
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is None:
            vec_normalize = self.loaded_normalizer
        return vec_normalize if vec_normalize is not None and vec_normalize.norm_obs else None

    def make_eval_env(self, n_episodes: int, video_dir: Path | None = None) -> gym.vector.VectorEnv:
        """The lab's evaluation env with raw observations and no normalization wrapper (the lab's cannot take
        Dict observations): `evaluate_policy` normalizes with SB3's statistics instead."""
        cfg = copy.copy(self.env_cfg)  # a shallow copy: EnvConfig's checks are not run again
        cfg.normalize_obs = cfg.normalize_reward = False
        env = make_env(cfg, seed=self.hp.seed + 10_000, num_envs=min(n_episodes, 8), training=False,
                       video_dir=video_dir, encode_obs=False)
        env.reset(seed=self.hp.seed + 10_000)
        return env

    def evaluate_policy(self, model: BaseAlgorithm, n_episodes: int, env: gym.vector.VectorEnv | None = None,
                        video_dir: Path | None = None) -> dict[str, float]:
        """Like our agents: periodic evaluations continue one eval env (fresh episodes each time, the
        same protocol for both); the final one gets its own env (with the video)."""
        own = env is None
        if own:
            env = self.make_eval_env(n_episodes, video_dir)
        normalizer = self.obs_normalizer(model)

        def policy(obs: Any, deterministic: bool) -> np.ndarray:
            if normalizer is not None:  # a normalized copy, with frozen statistics
                obs = normalizer.normalize_obs(obs)
            return model.predict(obs, deterministic=deterministic)[0]

        try:
            returns, lengths = evaluate(policy, env, n_episodes, self.hp.eval_deterministic)
        finally:
            if own:
                env.close()
        return evaluation_metrics(returns, lengths)

    def load(self, path: str | Path) -> BaseAlgorithm:
        path = Path(path)
        model = self.algorithm.load(path, device=self.model_device())
        self.loaded_normalizer = None
        stats_file = path.with_suffix(".vecnormalize.pkl")
        if stats_file.is_file():  # VecNormalize pickles without its venv: its statistics are all we need
            with stats_file.open("rb") as f:
                self.loaded_normalizer = pickle.load(f)
        return model

    def model_kwargs(self, venv: VecEnv) -> dict[str, Any]:
        """The algorithm's constructor arguments besides the policy, env, seed and device."""
        kwargs = dict(self.kwargs)
        if self.mlp_policy_kwargs and self.policy != "CnnPolicy":  # SB3's CnnPolicy: no MLP after the CNN
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **self.mlp_policy_kwargs}
        return kwargs

    def learn(self, loggers: list[Logger], run: RunLayout) -> BaseAlgorithm:
        """SB3's training loop with the lab's evaluation, checkpoints and loggers; returns the trained model."""
        device = self.model_device()  # chooses the policy first if check_env has not run
        if self.hp.torch_threads is not None:  # None: torch's default (one per core), as SB3's users run it
            torch.set_num_threads(self.hp.torch_threads)
        venv = self.make_vec_env()
        model = self.algorithm(self.policy, venv, seed=self.hp.seed, device=device, **self.model_kwargs(venv))
        callback = _EvalAndCheckpoint(self, loggers, run)
        writer = _ToLabLoggers(loggers, self.hp.log_interval, callback.train_seconds)
        model.set_logger(SB3Logger(folder=None, output_formats=[writer]))
        model.learn(self.hp.total_timesteps, callback=callback, log_interval=1)
        self.save(model, run.sb3_last)
        self.after_learn(model, run)
        venv.close()
        return model

    def after_learn(self, model: BaseAlgorithm, run: RunLayout) -> None:
        """What is saved beside last.zip: the replay buffer with agent.save_replay_buffer (DQN, SAC; SB3's
        load_replay_buffer reads it back)."""
        if isinstance(self.hp, ReplayConfig) and self.hp.save_replay_buffer:
            model.save_replay_buffer(run.sb3_replay_buffer)


class SB3Runner(Runner):
    """Runs an SB3 baseline (agent=sb3_ppo | sb3_dqn | sb3) with its own loop: no Lightning trainer or callbacks;
    checkpoints are SB3's `checkpoints/last.zip` and `best.zip`; resume=true is for the lab's agents."""

    uses_trainer = False
    can_resume = False

    uses_trainer_keys = ("accelerator",)  # SB3's device: cpu | gpu (cuda) | auto (a GPU for CNN policies)

    def build(self, cfg: DictConfig) -> None:
        self.env, self.agent = build_env_and_agent(cfg)
        accelerator = str(cfg.trainer.get("accelerator", "auto"))
        if accelerator != "auto":
            self.agent.device = {"gpu": "cuda"}.get(accelerator, accelerator)

    def check_checkpoint(self, path: Path) -> None:
        if path.suffix != ".zip":
            raise ValueError("SB3 baselines save .zip files (checkpoints/last.zip, best.zip); this is not one")

    def fit(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        self.model = self.agent.learn(run.loggers, run.layout)
        return {}

    def best_checkpoint(self, run: RunContext) -> str | None:
        best = run.layout.sb3_best
        return str(best) if best.is_file() else None

    def test(self, run: RunContext, ckpt_path: str | None) -> dict[str, float]:
        model = self.agent.load(ckpt_path) if ckpt_path else self.model
        video_dir = run.layout.videos
        metrics = self.agent.evaluate_policy(model, self.agent.eval_episodes,
                                             video_dir=video_dir if self.agent.video else None)
        steps = model.num_timesteps
        for lg in run.loggers:
            lg.log_metrics(metrics, step=steps)
            files = video_files(video_dir) if self.agent.video else []
            if files and isinstance(lg, WandbLogger):
                lg.log_video("eval/video", [str(files[-1])], step=steps)
            lg.save()
        return metrics

    def summary(self, metrics: dict[str, float]) -> list[str]:
        return evaluation_lines(self.agent.eval_episodes, metrics)
