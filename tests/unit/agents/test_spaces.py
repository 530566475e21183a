"""Observation encoding and features for every space, as SB3's preprocess_obs gives them; env actions."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import preprocess_obs

from agents.common.envs import EnvConfig, make_env
from agents.common.nets import NatureCNN, SmallCNN
from agents.common.spaces import (
    ObsEncoder,
    encode,
    encoded_space,
    normalization_mask,
    observation_parts,
    to_env_actions,
)

DICT = spaces.Dict({"pos": spaces.Discrete(3, start=1), "vel": spaces.Box(-1, 1, (2,), np.float32),
                    "keys": spaces.MultiBinary(2), "dir": spaces.MultiDiscrete([2, 3])})


def test_encoding_stores_indices_and_values_in_order():
    obs = {"pos": 2, "vel": np.array([0.5, -0.25], np.float32), "keys": np.array([1, 0], np.int8),
           "dir": np.array([1, 2])}
    flat = encode(DICT, obs)
    assert flat.dtype == np.float32
    # gymnasium's Dict sorts its keys: dir, keys, pos - start, vel
    assert flat.tolist() == [1.0, 2.0, 1.0, 0.0, 1.0, 0.5, -0.25]
    assert encoded_space(DICT).shape == (7,)
    assert [(p.path, p.kind, p.start) for p in observation_parts(DICT)] == [
        ("dir", "multi_discrete", 0), ("keys", "binary", 2), ("pos", "discrete", 4), ("vel", "box", 5)]


@pytest.mark.parametrize("space", [spaces.Discrete(5), spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(4),
                                   spaces.Box(-1, 1, (2, 3), np.float32)])
def test_features_are_sb3_preprocess_obs(space):
    """One-hot, concatenated one-hots, bits as floats, a flattened Box: what SB3's MlpPolicy sees."""
    space.seed(0)
    samples = [space.sample() for _ in range(6)]
    enc = ObsEncoder(space, "auto")
    stored = np.stack([encode(space, s) for s in samples]) if not isinstance(space, spaces.Box) else np.stack(samples)
    features = enc(torch.as_tensor(stored))
    expected = preprocess_obs(torch.as_tensor(np.stack(samples)), space).flatten(1).float()
    torch.testing.assert_close(features, expected)
    assert enc.out_dim == features.shape[1]


def test_dict_features_concatenate_each_part_and_images_get_a_cnn():
    space = spaces.Dict({"img": spaces.Box(0, 255, (40, 40, 3), np.uint8), "n": spaces.Discrete(4)})
    enc = ObsEncoder(space, "auto")
    assert isinstance(enc.extractors[0], NatureCNN) and enc.out_dim == 256 + 4  # SB3's CombinedExtractor widths
    space.seed(1)
    obs = [space.sample() for _ in range(3)]
    features = enc(torch.as_tensor(np.stack([encode(space, o) for o in obs])))
    images = torch.as_tensor(np.stack([o["img"] for o in obs])).permute(0, 3, 1, 2)  # channel-last, detected
    torch.testing.assert_close(features[:, :256], enc.extractors[0](images))
    torch.testing.assert_close(features[:, 256:], torch.nn.functional.one_hot(torch.tensor([o["n"] for o in obs]), 4).float())
    assert not enc.single_image


def test_images_of_any_size_and_layout():
    small = ObsEncoder(spaces.Box(0, 255, (3, 10, 10), np.uint8), "auto")  # channel-first, under 36x36
    assert isinstance(small.extractors[0], SmallCNN) and small.single_image
    assert small(torch.zeros(2, 3, 10, 10, dtype=torch.uint8)).shape == (2, 512)
    big = ObsEncoder(spaces.Box(0, 255, (50, 60, 1), np.uint8), "auto")  # channel-last, any size
    assert isinstance(big.extractors[0], NatureCNN)
    assert big(torch.zeros(2, 50, 60, 1, dtype=torch.uint8)).shape == (2, 512)
    grey = ObsEncoder(spaces.Box(0, 255, (84, 84), np.uint8), "auto")  # Atari frames without frame stacking
    assert isinstance(grey.extractors[0], NatureCNN) and grey.extractors[0].conv[0].in_channels == 1
    assert grey(torch.zeros(2, 84, 84, dtype=torch.uint8)).shape == (2, 512)
    flat = ObsEncoder(spaces.Box(0, 255, (8, 8, 3), np.uint8), "mlp")  # flattened and scaled, as SB3's MlpPolicy
    torch.testing.assert_close(flat(torch.full((1, 8, 8, 3), 255, dtype=torch.uint8)), torch.ones(1, 192))


@pytest.mark.parametrize(("space", "encoder", "match"), [
    (spaces.Box(-1, 1, (4,)), "nature_cnn", r"needs image observations .* Box\(-1.0, 1.0, \(4,\)"),
    (spaces.Discrete(3), "cnn", r"needs image observations .* Discrete\(3\)"),
    (spaces.Box(0, 255, (3, 20, 20), np.uint8), "nature_cnn", "at least 36x36; the image of .* is 20x20"),
    (spaces.Box(-1, 1, (4,)), "conv", "agent.encoder='conv' is not valid; valid choices: auto, mlp, cnn, nature_cnn"),
    (spaces.Text(5), "auto", r"observation space Text\(.*\) is not supported"),
    (spaces.Dict({"a": spaces.Sequence(spaces.Discrete(2))}), "auto", "at 'a'"),
])
def test_impossible_encoder_choices_name_the_space(space, encoder, match):
    with pytest.raises(ValueError, match=match):
        ObsEncoder(space, encoder)


def test_normalization_skips_images_indices_and_bits():
    assert normalization_mask(spaces.Box(-1, 1, (3,))) is None  # a plain vector: all of it
    assert normalization_mask(DICT).tolist() == [False, False, False, False, False, True, True]
    with pytest.raises(ValueError, match=r"env.normalize_obs=true, but the observation space Discrete\(16\)"):
        normalization_mask(spaces.Discrete(16))
    with pytest.raises(ValueError, match="nothing it can normalize"):
        normalization_mask(spaces.Box(0, 255, (84, 84, 3), np.uint8))


def test_normalized_dict_observations_keep_indices():
    cfg = EnvConfig("lab/IdentityTuple-v0", num_envs=2, normalize_obs=True)
    env = make_env(cfg, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    assert set(obs[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0}  # the state index, untouched
    assert np.abs(obs[:, 1:]).max() < 3  # noise in [-1, 1], standardized


def test_env_actions_have_the_env_shape_offset_and_dtype():
    md = spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 1], [0, -2]])
    out = to_env_actions(md, np.array([[1, 2, 3, 4]]))
    assert out.shape == (1, 2, 2) and out.tolist() == [[[2, 3], [3, 2]]] and md.contains(out[0])
    assert to_env_actions(spaces.Discrete(3, start=-1), np.array([0, 2])).tolist() == [-1, 1]
    bits = to_env_actions(spaces.MultiBinary(3), np.array([[1.0, 0.0, 1.0]]))
    assert bits.dtype == np.int8 and spaces.MultiBinary(3).contains(bits[0])
    assert to_env_actions(spaces.Box(-1, 1, (2, 2)), np.zeros((3, 4))).shape == (3, 2, 2)


def test_encoded_envs_step_for_every_identity_space():
    for env_id, width in (("lab/IdentityDiscrete-v0", 1), ("lab/IdentityMultiDiscrete-v0", 2),
                          ("lab/IdentityMultiBinary-v0", 4), ("lab/IdentityTuple-v0", 3),
                          ("lab/SimpleMultiObs-v0", 64 * 64 + 5)):
        env = make_env(EnvConfig(env_id, num_envs=2), seed=0)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, width) and obs.dtype == np.float32, env_id
        env.close()
    raw = make_env(EnvConfig("lab/SimpleMultiObs-v0", num_envs=2), seed=0, encode_obs=False)
    assert isinstance(raw.single_observation_space, gym.spaces.Dict)  # what SB3 is given
    raw.close()
