"""Which observation and action spaces, and which policy, Stable-Baselines3's algorithms take: checked before
anything is built, with the lab's one-paragraph errors."""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

# The action spaces each algorithm passes to SB3 as `supported_action_spaces` (SB3 asserts them once the
# model is built; the lab checks them before): tests/unit/agents/test_sb3.py pins this table to SB3's own.
_ALL_ACTIONS = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "A2C": _ALL_ACTIONS, "PPO": _ALL_ACTIONS, "DQN": (spaces.Discrete,), "SAC": (spaces.Box,), "TD3": (spaces.Box,),
    "DDPG": (spaces.Box,)}
OBS_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)  # and a Dict of them
NATURE_MIN_SIZE = 36  # SB3's NatureCNN (8x8/4, 4x4/2, 3x3/1 convolutions) needs images of at least 36x36

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
