"""Any Gymnasium observation and action space for the lab's agents, as Stable-Baselines3 handles them.

Observations (SB3's `preprocess_obs` and `CombinedExtractor` are the reference): a Box is given to the
network as it is (images: uint8 with bounds 0-255, three dimensions, channel-first or channel-last told
by the smallest dimension, or two for one grey channel, scaled by 1/255); every other space is *encoded* per env into one flat float32
vector that the buffers store (Discrete as its index, MultiDiscrete as its indices, MultiBinary as its
bits, Box parts raveled, Dict and Tuple parts one after another), and `ObsEncoder` turns that vector into
features: one-hot for Discrete, concatenated one-hots for MultiDiscrete, floats for MultiBinary, a CNN per
image part, the rest as they are, concatenated. Storing indices rather than one-hots keeps replay buffers
small (Taxi's 500 states: one number per observation, not 500).

Actions: `to_env_actions` turns what a policy samples (indices from 0, flat vectors) into the env's
actions (Discrete/MultiDiscrete `start` offsets, the action space's shape and dtype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from agents.common.nets import NatureCNN, SmallCNN

ENCODERS = ("auto", "mlp", "cnn", "nature_cnn")
NATURE_MIN_SIZE = 36  # the Nature CNN's 8x8/4, 4x4/2, 3x3/1 convolutions need images of at least 36x36


@dataclass(frozen=True)
class Part:
    """One leaf of an observation space: where it lies in the encoded vector and how it becomes features."""

    path: str  # "" for the whole space; "img", "0", "pos.x" inside Dict / Tuple spaces
    kind: str  # image | box | discrete | multi_discrete | binary
    start: int  # offset in the encoded vector
    size: int  # numbers it takes there
    shape: tuple[int, ...]  # the leaf's own shape
    nvec: tuple[int, ...] = ()  # discrete: (n,); multi_discrete: the number of values of each component
    low: tuple[int, ...] = ()  # discrete / multi_discrete: each component's `start`

    @property
    def image_hw_c(self) -> tuple[int, int, int]:
        """(height, width, channels) of an image part."""
        return image_layout(self.shape)


def is_image(space: spaces.Space) -> bool:
    """SB3's is_image_space (a 3-dimensional uint8 Box with bounds 0 and 255), and also a 2-dimensional one: a
    grey frame without a channel axis (Atari preprocessing without frame stacking), one channel here."""
    return (isinstance(space, spaces.Box) and len(space.shape) in (2, 3) and space.dtype == np.uint8
            and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255)))


def channels_first(shape: tuple[int, ...]) -> bool:
    """SB3's is_image_space_channels_first: the smallest dimension is the channels (none: a grey frame)."""
    return len(shape) == 2 or int(np.argmin(shape)) == 0


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if channels_first(shape):
        return shape[1], shape[2], shape[0]
    return shape[0], shape[1], shape[2]


def _parts(space: spaces.Space, path: str, start: int, out: list[Part]) -> int:
    if isinstance(space, spaces.Box):
        size = int(math.prod(space.shape))
        out.append(Part(path, "image" if is_image(space) else "box", start, size, tuple(space.shape)))
        return start + size
    if isinstance(space, spaces.Discrete):
        out.append(Part(path, "discrete", start, 1, (), (int(space.n),), (int(space.start),)))
        return start + 1
    if isinstance(space, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).reshape(-1))
        low = tuple(int(s) for s in np.asarray(space.start).reshape(-1))
        out.append(Part(path, "multi_discrete", start, len(nvec), tuple(space.shape), nvec, low))
        return start + len(nvec)
    if isinstance(space, spaces.MultiBinary):
        size = int(math.prod(space.shape))
        out.append(Part(path, "binary", start, size, tuple(space.shape)))
        return start + size
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        items = space.spaces.items() if isinstance(space, spaces.Dict) else enumerate(space.spaces)
        for key, sub in items:
            start = _parts(sub, f"{path}.{key}" if path else str(key), start, out)
        return start
    where = f" (at {path!r})" if path else ""
    raise ValueError(f"the observation space {space}{where} is not supported: the agents take Box, Discrete, "
                     "MultiDiscrete, MultiBinary, and Dict / Tuple spaces of those (like Stable-Baselines3); "
                     "wrap the env to give one of them.")


def observation_parts(space: spaces.Space) -> list[Part]:
    """The leaves of `space` in the order `encode` writes them (ValueError for spaces the agents cannot take)."""
    out: list[Part] = []
    _parts(space, "", 0, out)
    return out


def needs_encoding(space: spaces.Space) -> bool:
    """Box observations reach the agents as they are; every other space as one flat float32 vector."""
    return not isinstance(space, spaces.Box)


def encoded_space(space: spaces.Space) -> spaces.Box:
    """The space the buffers store: `space` itself for a Box, else the flat float32 encoding."""
    if not needs_encoding(space):
        return space
    parts = observation_parts(space)
    return spaces.Box(-np.inf, np.inf, (parts[-1].start + parts[-1].size,), np.float32)


def _leaves(space: spaces.Space, obs: object, out: list[np.ndarray]) -> None:
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            _leaves(sub, obs[key], out)
    elif isinstance(space, spaces.Tuple):
        for sub, o in zip(space.spaces, obs, strict=True):
            _leaves(sub, o, out)
    elif isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        out.append((np.asarray(obs) - space.start).reshape(-1))
    else:
        out.append(np.asarray(obs).reshape(-1))


def encode(space: spaces.Space, obs: object) -> np.ndarray:
    """One observation of a non-Box `space` as the flat float32 vector the buffers store."""
    leaves: list[np.ndarray] = []
    _leaves(space, obs, leaves)
    return np.concatenate(leaves).astype(np.float32)


class EncodeObservation(gym.ObservationWrapper):
    """A non-Box observation as one flat float32 vector (`encode`); `raw_space` keeps the env's own space."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.raw_space = env.observation_space
        self.observation_space = encoded_space(env.observation_space)

    def observation(self, observation: object) -> np.ndarray:
        return encode(self.raw_space, observation)


def normalization_mask(space: spaces.Space) -> np.ndarray | None:
    """Which numbers of the stored observation env.normalize_obs may normalize (None: all of them): the
    non-image Box parts. Images (scaled by 1/255), indices and bits are left as they are (ValueError when
    that leaves nothing)."""
    parts = observation_parts(space)
    if not needs_encoding(space) and parts[0].kind == "box":
        return None
    mask = np.zeros(encoded_space(space).shape[0] if needs_encoding(space) else 0, dtype=bool)
    for p in parts:
        if p.kind == "box":
            mask[p.start:p.start + p.size] = True
    if not mask.any():
        raise ValueError(f"env.normalize_obs=true, but the observation space {space} has nothing it can normalize: "
                         "images are scaled by 1/255 and Discrete / MultiDiscrete / MultiBinary parts are one-hot "
                         "encoded or bits; set env.normalize_obs=false.")
    return mask


def _image_cnn(part: Part, encoder: str, features: int, space: spaces.Space) -> nn.Module:
    h, w, c = part.image_hw_c
    if encoder == "nature_cnn" and min(h, w) < NATURE_MIN_SIZE:
        where = f" {part.path!r}" if part.path else ""
        raise ValueError(f"agent.encoder='nature_cnn' needs images of at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}; the "
                         f"image{where} of the observation space {space} is {h}x{w}. Use agent.encoder=auto (a "
                         "smaller CNN for small images) or cnn.")
    if min(h, w) >= NATURE_MIN_SIZE:
        return NatureCNN(c, features, (h, w))
    return SmallCNN(c, features, (h, w))


class ObsEncoder(nn.Module):
    """(B, *stored observation) -> (B, out_dim) features, for any space `observation_parts` takes.

    `encoder`: auto (images through a CNN, everything else flattened), mlp (everything flattened, images
    scaled), cnn / nature_cnn (as auto, but the observations must hold an image; nature_cnn: the Mnih et al.
    CNN, for images of at least 36x36). A single image observation gets `image_features` (512, SB3's
    CnnPolicy); images inside a Dict / Tuple get 256 each (SB3's CombinedExtractor).
    """

    def __init__(self, space: spaces.Space, encoder: str = "auto", image_features: int = 512) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"agent.encoder={encoder!r} is not valid; valid choices: {', '.join(ENCODERS)}.")
        self.parts = observation_parts(space)
        self.encoded = needs_encoding(space)
        images = [p for p in self.parts if p.kind == "image"]
        if encoder in ("cnn", "nature_cnn") and not images:
            raise ValueError(f"agent.encoder={encoder!r} needs image observations (uint8 Box of 3 dimensions with "
                             f"bounds 0-255, or a Dict / Tuple holding one); the observation space is {space}. "
                             "Use agent.encoder=auto or mlp.")
        use_cnn = encoder != "mlp"
        features = image_features if not self.encoded else 256
        self.extractors = nn.ModuleList(
            _image_cnn(p, encoder, features, space) if p.kind == "image" and use_cnn else nn.Identity()
            for p in self.parts)
        widths = []
        for p, net in zip(self.parts, self.extractors, strict=True):
            if isinstance(net, (NatureCNN, SmallCNN)):
                widths.append(net.out_dim)
            elif p.kind in ("discrete", "multi_discrete"):
                widths.append(sum(p.nvec))
            else:
                widths.append(p.size)
        self.out_dim = sum(widths)
        # One image observation and nothing else: the CNN's features feed the heads directly (SB3's CnnPolicy).
        self.single_image = not self.encoded and bool(images) and use_cnn
        self.flat_box = not self.encoded and self.parts[0].kind == "box" and len(self.parts[0].shape) == 1

    def _part(self, p: Part, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if p.kind == "image":
            x = x.reshape(x.shape[0], *p.shape)
            if len(p.shape) == 2:  # a grey frame: one channel
                x = x.unsqueeze(1)
            if isinstance(net, (NatureCNN, SmallCNN)):
                return net(x if channels_first(p.shape) else x.permute(0, 3, 1, 2))  # the CNNs scale by 1/255
            return x.flatten(1).float() / 255.0
        if p.kind == "discrete":
            return F.one_hot(x[:, 0].long(), p.nvec[0]).float()
        if p.kind == "multi_discrete":
            x = x.long()
            return torch.cat([F.one_hot(x[:, i], n) for i, n in enumerate(p.nvec)], dim=-1).float()
        return x.flatten(1).float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.flat_box:  # a vector observation (most envs): as it is, once per env step and minibatch
            return obs if obs.dtype == torch.float32 else obs.float()
        if not self.encoded:  # one Box: the observation itself
            return self._part(self.parts[0], self.extractors[0], obs)
        return torch.cat([self._part(p, net, obs[:, p.start:p.start + p.size])
                          for p, net in zip(self.parts, self.extractors, strict=True)], dim=-1)


# ---- actions -------------------------------------------------------------------------------------------
def to_env_actions(space: spaces.Space, actions: np.ndarray) -> np.ndarray:
    """A batch of sampled actions (indices from 0, flat vectors) as the env's actions (start offsets, shape, dtype)."""
    if isinstance(space, spaces.Discrete):
        return actions + space.start if space.start else actions
    if isinstance(space, spaces.MultiDiscrete):
        return (actions.reshape(len(actions), *space.shape) + space.start).astype(space.dtype)
    if isinstance(space, spaces.MultiBinary):
        return actions.reshape(len(actions), *space.shape).astype(space.dtype)
    if isinstance(space, spaces.Box) and len(space.shape) != 1:
        return actions.reshape(len(actions), *space.shape)
    return actions
