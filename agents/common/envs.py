"""Environments: one config node (`conf/env/<name>.yaml`) -> Gymnasium vector envs for our agents and SB3's.

Vector envs use Gymnasium's *same-step* autoreset (the SB3 convention): when a sub-env ends, `step`
returns the first observation of its next episode and puts the last one in `info["final_obs"]`, so every
transition in a rollout is a real one and a truncated episode can be bootstrapped from V(final obs).
Gymnasium's default next-step mode would add a dummy transition after every episode end instead.

`vectorization: vector` steps all sub-envs as one NumPy array program where the env has one: CartPole
(Gymnasium's CartPoleVectorEnv, turned same-step here), or a user's env registered with a
`vector_entry_point` whose metadata says `autoreset_mode: SAME_STEP`. Evaluation envs stay `sync`.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode

from agents.common.spaces import EncodeObservation, needs_encoding, normalization_mask
from agents.common.wrappers import NormalizeObservation, NormalizeReward

Vectorization = Literal["sync", "async", "vector"]
VECTORIZATIONS = ("sync", "async", "vector")


def _register_atari() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # the atari extra is optional for users; Atari ids then stay unknown
        pass


def check_env_id(env_id: str) -> None:
    """ValueError naming close matches when `env_id` is not registered with Gymnasium.

    Gymnasium's `module:EnvId` form (a user's own package, which registers `EnvId` when imported) is
    accepted: the module is imported first, as `gymnasium.make` does, and a failed import names it.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except Exception as e:
            raise ValueError(f"env.id={env_id!r}: the module {module!r} cannot be imported ({type(e).__name__}: {e}). "
                             "It must be importable from where you run (your project's folder, or on PYTHONPATH), "
                             "and register the id with gymnasium.register when imported.") from None
    if name in gym.registry:
        return
    _register_atari()
    if name in gym.registry:
        return
    close = difflib.get_close_matches(name, list(gym.registry), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "no registered id is close"
    where = f" (after importing {module!r})" if module else ""
    raise ValueError(f"env.id={env_id!r} is not a registered Gymnasium environment{where} ({hint}). "
                     "List them with `python -c \"import gymnasium; gymnasium.pprint_registry()\"`; your own env: "
                     "env.id=<module>:<EnvId>, with the module registering it.")


@dataclass
class EnvConfig:
    """What `make_env` builds. One node per environment in conf/env/."""

    id: str
    num_envs: int = 1
    vectorization: Vectorization = "sync"
    kwargs: dict[str, Any] = field(default_factory=dict)  # the env constructor's (gymnasium.make's) arguments
    max_episode_steps: int | None = None
    normalize_obs: bool = False  # running mean/std of observations (SB3 VecNormalize's norm_obs)
    normalize_reward: bool = False  # scale rewards by the std of the discounted return (norm_reward)
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    atari: bool = False  # Atari preprocessing: noop reset, frame skip 4, 84x84 grey, life loss, reward clip
    frame_stack: int = 1
    env_kwargs: dict[str, Any] | None = None  # the old name of `kwargs`, still read (with a warning)
    _spaces: tuple[gym.Space, gym.Space] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.env_kwargs:
            warnings.warn("env.env_kwargs is now env.kwargs; it is read as env.kwargs this time", FutureWarning,
                          stacklevel=2)
            self.kwargs = {**dict(self.env_kwargs), **dict(self.kwargs)}
        check_env_id(self.id)
        if isinstance(self.num_envs, bool) or not isinstance(self.num_envs, int) or self.num_envs <= 0:
            raise ValueError(f"env.num_envs={self.num_envs!r} is not valid: it must be an integer > 0.")
        if self.vectorization not in VECTORIZATIONS:
            raise ValueError(f"env.vectorization={self.vectorization!r} is not valid; valid choices: "
                             f"{', '.join(VECTORIZATIONS)}.")
        if self.vectorization == "vector":
            check_vector_env(self)
        if self.frame_stack < 1:
            raise ValueError(f"env.frame_stack={self.frame_stack!r} is not valid: it must be an integer >= 1.")
        if self.clip_obs <= 0 or self.clip_reward <= 0:
            raise ValueError(f"env.clip_obs={self.clip_obs!r} / env.clip_reward={self.clip_reward!r}: both must be > 0.")

    def renders(self) -> bool:
        """Whether the env can give frames for videos: it is made with render_mode="rgb_array"."""
        try:
            make_single_env(self, training=False, render_mode="rgb_array").close()
        except TypeError:  # its constructor takes no render_mode argument (or none at all) ...
            make_single_env(self, training=False).close()  # ... if it can be made without: else its own error
            return False
        return True

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of one wrapped env as the env gives them (before the agents'
        observation encoding), without building the vector env; made once."""
        if self._spaces is None:
            self._spaces = self._make_spaces()
        return self._spaces

    def _make_spaces(self) -> tuple[gym.Space, gym.Space]:
        try:
            env = make_single_env(self, training=True)
        except Exception as e:  # an env's own constructor, or its kwargs: named, before anything trains
            raise ValueError(f"env.id={self.id!r} could not be made by gymnasium.make with env.kwargs="
                             f"{dict(self.kwargs)} ({type(e).__name__}: {e}).") from None
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()


def _is_gym_cartpole(env_id: str) -> bool:
    return gym.spec(env_id).entry_point == "gymnasium.envs.classic_control.cartpole:CartPoleEnv"


def check_vector_env(cfg: EnvConfig) -> None:
    """ValueError unless env.vectorization=vector can build `cfg.id` as one same-step vector env."""
    if cfg.atari or cfg.frame_stack > 1:
        raise ValueError(f"env.vectorization='vector' steps the env's own vector implementation, which the "
                         f"per-env wrappers of env.atari / env.frame_stack (here {cfg.atari} / {cfg.frame_stack}) "
                         "cannot wrap; use env.vectorization=sync or async.")
    spec = gym.spec(cfg.id)
    if _is_gym_cartpole(cfg.id):
        return
    if spec.vector_entry_point is None:
        raise ValueError(f"env.vectorization='vector': env.id={cfg.id!r} has no vector implementation (no "
                         "vector_entry_point in its registration). CartPole has one; your own env can, registered "
                         "with gymnasium.register(..., vector_entry_point=...) and metadata['autoreset_mode'] = "
                         "AutoresetMode.SAME_STEP. Otherwise use env.vectorization=sync or async.")


class SameStepCartPole(CartPoleVectorEnv):
    """Gymnasium's NumPy CartPole vector env with same-step autoreset, as the other modes give.

    Gymnasium's version resets a finished sub-env on the *next* call to `step`, which then ignores that
    sub-env's action and returns a dummy transition. Here the sub-env is reset in the step that ends its
    episode: `step` returns the new episode's first observation and puts the last one in
    `info["final_obs"]` (marked by `info["_final_obs"]`), as SyncVectorEnv's same-step mode does.
    """

    metadata = {**CartPoleVectorEnv.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.prev_done[:] = False  # nothing left for the parent's next-step reset: it was done below
        obs, reward, terminated, truncated, info = super().step(action)
        done = terminated | truncated
        if done.any():
            info = {"final_obs": obs.copy(), "_final_obs": done}
            self.state[:, done] = self.np_random.uniform(low=self.low, high=self.high, size=(4, int(done.sum())))
            self.steps[done] = 0
            self.prev_done[:] = False
            obs[done] = self.state[:, done].T
        return obs, reward, terminated, truncated, info


class EpisodeStatistics(gym.vector.VectorWrapper):
    """Episode returns and lengths of a same-step vector env, in `info["final_info"]["episode"]` where an
    episode ends (`r`, `l`; `_episode` marks the sub-envs), as per-env RecordEpisodeStatistics put them."""

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        return self.env.reset(**kwargs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self.returns += rewards
        self.lengths += 1
        done = terminated | truncated
        if done.any():
            final = dict(infos.get("final_info", {}))
            final["episode"] = {"r": self.returns.copy(), "l": self.lengths.copy()}
            final["_episode"] = done
            infos = {**infos, "final_info": final}
            self.returns[done] = 0.0
            self.lengths[done] = 0
        return obs, rewards, terminated, truncated, infos


def make_vector_env(cfg: EnvConfig, num_envs: int) -> gym.vector.VectorEnv:
    """env.vectorization=vector: the env's own vector implementation, same-step, with episode statistics."""
    kwargs = dict(cfg.kwargs)
    steps = cfg.max_episode_steps or gym.spec(cfg.id).max_episode_steps
    if _is_gym_cartpole(cfg.id):
        env: gym.vector.VectorEnv = SameStepCartPole(num_envs=num_envs, max_episode_steps=steps or 500, **kwargs)
    else:
        if steps is not None:
            kwargs["max_episode_steps"] = steps
        env = gym.make_vec(cfg.id, num_envs, vectorization_mode="vector_entry_point", vector_kwargs=kwargs)
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            env.close()
            raise ValueError(f"env.vectorization='vector': env.id={cfg.id!r}'s vector env has autoreset_mode "
                             f"{mode!r}; the agents need AutoresetMode.SAME_STEP (set it in the class's metadata, "
                             "with the last observation in info['final_obs']), or use env.vectorization=sync.")
    if isinstance(env.single_action_space, gym.spaces.Box):
        env = gym.wrappers.vector.ClipAction(env)
    return EpisodeStatistics(env)


def make_single_env(cfg: EnvConfig, training: bool, render_mode: str | None = None,
                    video_dir: Path | None = None, clip_actions: bool = True, encode_obs: bool = False) -> gym.Env:
    """One env with the per-episode wrappers. `training=False` keeps true scores (no life loss, no reward clip);
    `encode_obs` turns a non-Box observation into the flat vector the lab's agents store (spaces.encode)."""
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if cfg.atari:
        _register_atari()
        kwargs.setdefault("frameskip", 1)  # AtariPreprocessing does the frame skipping (with max-pooling)
    # render_mode only when frames are wanted: an env whose constructor has no render_mode is made without it
    env = gym.make(cfg.id, **({} if render_mode is None else {"render_mode": render_mode}), **kwargs)
    if video_dir is not None:
        env = gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda ep: ep == 0,
                                       name_prefix="eval", disable_logger=True)
    # Innermost, so returns and lengths are the real game's (before life loss, clipping or normalization).
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if cfg.atari:
        from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv, FireResetEnv

        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                              terminal_on_life_loss=False, grayscale_obs=True)
        if training:
            env = EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireResetEnv(env)
        if training:
            env = ClipRewardEnv(env)
    if clip_actions and isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)  # Gaussian policies sample outside the bounds
    if cfg.frame_stack > 1:
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ValueError(f"env.frame_stack={cfg.frame_stack} stacks Box observations; env.id={cfg.id!r} gives "
                             f"{env.observation_space}. Set env.frame_stack=1.")
        env = gym.wrappers.FrameStackObservation(env, cfg.frame_stack)
    if encode_obs and needs_encoding(env.observation_space):
        env = EncodeObservation(env)
    return env


def env_fns(cfg: EnvConfig, num_envs: int | None = None, training: bool = True, video_dir: Path | None = None,
            clip_actions: bool = True, encode_obs: bool = False) -> list[Callable[[], gym.Env]]:
    """One constructor per sub-env with every per-episode wrapper (what our agents and SB3's both vectorize);
    `video_dir` records the first episode of sub-env 0. SB3 clips actions itself (clip_actions=False): it
    needs the env's finite action bounds, which ClipAction widens; and it encodes observations itself."""
    n = cfg.num_envs if num_envs is None else num_envs
    return [partial(make_single_env, cfg, training, "rgb_array" if (video_dir and i == 0) else None,
                    video_dir if i == 0 else None, clip_actions, encode_obs) for i in range(n)]


def make_env(cfg: EnvConfig, seed: int, num_envs: int | None = None, training: bool = True, gamma: float = 0.99,
             video_dir: Path | None = None, encode_obs: bool = True) -> gym.vector.VectorEnv:
    """Vector env of `num_envs` (default cfg.num_envs) copies, sub-env i seeded with `seed + i`.

    Observation normalization is shared across sub-envs (one running mean/std, like VecNormalize) and skips
    what is not a real number (images, indices, bits: `spaces.normalization_mask`); for evaluation
    (`training=False`) it is frozen and the reward is left unscaled. `video_dir` records the first episode
    of sub-env 0. `encode_obs` gives non-Box observations as the lab's agents store them (flat vectors).
    """
    env: gym.vector.VectorEnv
    raw_space = cfg.spaces()[0]
    if cfg.vectorization == "vector" and training:  # evaluation keeps real per-env episodes (and videos)
        if needs_encoding(raw_space):
            raise ValueError(f"env.vectorization='vector' takes Box observations; env.id={cfg.id!r} gives {raw_space}. "
                             "Use env.vectorization=sync or async.")
        env = make_vector_env(cfg, cfg.num_envs if num_envs is None else num_envs)
    else:
        vector_cls = gym.vector.AsyncVectorEnv if cfg.vectorization == "async" else gym.vector.SyncVectorEnv
        env = vector_cls(env_fns(cfg, num_envs, training, video_dir, encode_obs=encode_obs),
                         autoreset_mode=AutoresetMode.SAME_STEP)
    if cfg.normalize_obs:
        mask = normalization_mask(raw_space) if encode_obs else None
        env = NormalizeObservation(env, clip=cfg.clip_obs, update=training, mask=mask)
    if cfg.normalize_reward and training:
        env = NormalizeReward(env, gamma=gamma, clip=cfg.clip_reward)
    env.action_space.seed(seed)
    return env  # not reset yet: the caller resets it with its seed


def find_wrapper(env: gym.vector.VectorEnv, cls: type) -> Any:
    """The first wrapper of type `cls` around a vector env, or None."""
    while isinstance(env, gym.vector.VectorWrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def finished_episodes(infos: dict[str, Any]) -> list[tuple[int, float, int]]:
    """(sub-env index, return, length) of every episode that ended in this same-step-autoreset step."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    mask, ep = final["_episode"], final["episode"]
    return [(int(i), float(ep["r"][i]), int(ep["l"][i])) for i in np.flatnonzero(mask)]


def final_observations(obs: np.ndarray, infos: dict[str, Any], done: np.ndarray) -> np.ndarray:
    """The observations the sub-envs reached this step: `info["final_obs"]` where an episode ended."""
    if not done.any():
        return obs
    real = obs.copy()
    for i in np.flatnonzero(done):
        real[i] = infos["final_obs"][i]
    return real
