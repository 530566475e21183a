"""The SB3 baselines: the lab's envs for training and evaluation alike, the policy SB3's users would choose for any
observation space, the algorithm's action spaces, zoo-style hyperparameters checked by name, and no key silently
ignored."""

import functools
import pickle
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.common.envs import EnvConfig, find_wrapper
from agents.common.wrappers import NormalizeObservation
from agents.sb3 import SB3DQN, SB3PPO, SB3Algorithm
from agents.sb3.any import ALGORITHMS, constructor_keys, make_action_noise
from agents.sb3.callbacks import _ToLabLoggers
from agents.sb3.spaces import ACTION_SPACES, check_action_space, choose_policy, norm_obs_keys
from lab.layout import RunLayout

ADAM = functools.partial(torch.optim.Adam)


def test_training_and_evaluation_envs_are_the_same_envs():
    # frame stacking on a non-Atari env stacks in training too (it used to stack for evaluation only)
    agent = SB3PPO(EnvConfig("CartPole-v1", num_envs=2, frame_stack=3), ADAM, num_steps=8, batch_size=8)
    venv = agent.make_vec_env()
    eval_env = agent.make_eval_env(2)
    try:
        assert venv.observation_space.shape == eval_env.single_observation_space.shape == (3, 4)
        assert venv.num_envs == 2 and venv.reset().shape == (2, 3, 4)
    finally:
        venv.close()
        eval_env.close()


def test_log_interval_spaces_the_logged_steps():
    seen = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: seen.append((step, metrics)))
    writer = _ToLabLoggers([logger], log_interval=256)
    for step in (64, 128, 320, 400, 640):
        writer.write({"rollout/ep_rew_mean": 1.0, "train/entropy_loss": -0.5}, {}, step=step)
    assert [s for s, _ in seen] == [64, 320, 640]
    assert seen[0][1] == {"rollout/ep_return": 1.0, "train/entropy": 0.5}  # the lab's names


def test_save_replay_buffer_writes_the_buffer_beside_the_checkpoint(tmp_path):
    agent = SB3DQN(EnvConfig("CartPole-v1"), ADAM, save_replay_buffer=True)
    saved = []
    agent.after_learn(SimpleNamespace(save_replay_buffer=saved.append), RunLayout(tmp_path))
    assert saved == [tmp_path / "checkpoints" / "last_replay_buffer.pkl"]


@pytest.mark.parametrize(("key", "value"), [("per_alpha", 0.7), ("per_beta", 0.5), ("dueling", True),
                                            ("prioritized", True)])
def test_dqn_options_sb3_lacks_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"agent.{key}={value!r}: Stable-Baselines3's DQN has no such option"):
        SB3DQN(EnvConfig("CartPole-v1"), ADAM, **{key: value})


# --- Any observation space, as SB3's users would run it ---------------------------------------------------------

IMAGE_LAST = spaces.Box(0, 255, (64, 64, 3), np.uint8)
IMAGE_FIRST = spaces.Box(0, 255, (4, 84, 84), np.uint8)
DICT = spaces.Dict({"img": spaces.Box(0, 255, (64, 64, 1), np.uint8), "vec": spaces.Box(0, 1, (5,), np.float64)})


@pytest.mark.parametrize(("space", "encoder", "policy"), [
    (spaces.Discrete(4), "auto", "MlpPolicy"),  # SB3 one-hot encodes discrete observations itself
    (spaces.MultiDiscrete([4, 4]), "auto", "MlpPolicy"),
    (spaces.MultiBinary(4), "auto", "MlpPolicy"),
    (spaces.Box(-1, 1, (3,)), "auto", "MlpPolicy"),
    (spaces.Box(-1, 1, (3,)), "mlp", "MlpPolicy"),
    (spaces.Box(0, 1, (64, 64, 3), np.float32), "auto", "MlpPolicy"),  # not an image to SB3: float, bounds 0-1
    (IMAGE_LAST, "auto", "CnnPolicy"),
    (IMAGE_FIRST, "auto", "CnnPolicy"),
    (IMAGE_LAST, "cnn", "CnnPolicy"),
    (IMAGE_LAST, "nature_cnn", "CnnPolicy"),
    (IMAGE_LAST, "mlp", "MlpPolicy"),  # SB3's MlpPolicy flattens the (scaled) image
    (DICT, "auto", "MultiInputPolicy"),
    (DICT, "cnn", "MultiInputPolicy"),
    (spaces.Dict({"a": spaces.Discrete(3), "b": spaces.MultiBinary(2)}), "auto", "MultiInputPolicy"),
])
def test_policy_is_chosen_from_the_observation_space(space, encoder, policy):
    assert choose_policy(space, encoder, "X-v0") == policy


@pytest.mark.parametrize(("space", "encoder", "match"), [
    (spaces.Tuple((spaces.Discrete(4), spaces.Box(-1, 1, (2,)))), "auto",
     r"env.id='X-v0' has Tuple observations \(Tuple\(Discrete\(4\).*Stable-Baselines3 does not support.*agent=ppo "
     r"or agent=dqn"),
    (spaces.Dict({"inner": DICT}), "auto", r"key\(s\) 'inner' hold Dict.*no nested Dict or Tuple"),
    (spaces.Text(5), "auto", r"Text observations .* Stable-Baselines3 does not support"),
    (DICT, "mlp", r"agent.encoder='mlp' gives SB3's MlpPolicy, which cannot take Dict observations.*MultiInputPolicy"),
    (spaces.Box(-1, 1, (4,)), "cnn", r"agent.encoder='cnn' gives SB3's CnnPolicy, which needs image observations .*"
                                     r"not the observation space Box\(-1.0, 1.0, \(4,\), float32\) of env.id='X-v0'"),
    (spaces.Dict({"v": spaces.Box(-1, 1, (4,))}), "nature_cnn", r"needs image observations.*hold no image"),
    (spaces.Box(0, 255, (12, 12, 3), np.uint8), "auto", r"Nature CNN, which needs images of at least 36x36; the "
                                                        r"image of .* is 12x12.*agent.encoder=mlp"),
    (spaces.Dict({"img": spaces.Box(0, 255, (1, 20, 20), np.uint8)}), "auto", r"the image under 'img' .* is 20x20"),
])
def test_observation_spaces_sb3_cannot_take_are_refused_by_name(space, encoder, match):
    with pytest.raises(ValueError, match=match):
        choose_policy(space, encoder, "X-v0")


@pytest.mark.parametrize(("algo", "space", "match"), [
    ("DQN", spaces.Box(-2, 2, (1,)), r"Stable-Baselines3's DQN supports Discrete action spaces; env.id='X-v0' has "
                                     r"Box\(-2.0, 2.0, \(1,\), float32\). SB3's algorithms that take it: A2C, PPO, SAC, "
                                     r"TD3, DDPG"),
    ("SAC", spaces.Discrete(3), r"SAC supports Box action spaces; .* has Discrete\(3\). SB3's algorithms that take "
                                r"it: A2C, PPO, DQN"),
    ("TD3", spaces.MultiDiscrete([2, 3]), r"TD3 supports Box .* that take it: A2C, PPO \(agent=sb3 agent.algo=<name>\)"),
    ("PPO", spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))),
     r"PPO supports Box, Discrete, MultiDiscrete, MultiBinary action spaces.*No Stable-Baselines3 algorithm takes it"),
])
def test_action_spaces_the_algorithm_lacks_are_refused_by_name(algo, space, match):
    with pytest.raises(ValueError, match=match):
        check_action_space(algo, space, "X-v0")


class _Actions(gym.Env):
    """A one-number observation and the given action space: what SB3's constructors check."""

    def __init__(self, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = spaces.Box(-1, 1, (1,), np.float32), action_space

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_the_action_space_table_is_sb3s_own(algo):
    """ACTION_SPACES says before training what each algorithm's `supported_action_spaces` asserts once built."""
    cls = ALGORITHMS[algo]
    for space in (spaces.Box(-1, 1, (2,)), spaces.Discrete(3), spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(3)):
        venv = DummyVecEnv([functools.partial(_Actions, space)])
        try:
            cls("MlpPolicy", venv, _init_setup_model=False)
            supported = True
        except AssertionError as e:
            assert "only supports" in str(e)
            supported = False
        assert supported == isinstance(space, ACTION_SPACES[algo]), (algo, space)


@pytest.mark.parametrize(("space", "keys"), [
    (spaces.Box(-1, 1, (3,)), None),  # VecNormalize normalizes the whole Box
    (spaces.Dict({"img": IMAGE_LAST, "vec": spaces.Box(0, 1, (5,)), "d": spaces.Discrete(3),
                  "pos": spaces.Box(-5, 5, (2,))}), ["pos", "vec"]),  # images and discrete parts skipped
])
def test_normalized_observation_keys(space, keys):
    assert norm_obs_keys(space, "X-v0") == keys


@pytest.mark.parametrize(("space", "match"), [
    (IMAGE_LAST, r"has image observations"),
    (spaces.MultiDiscrete([2, 2]), r"has discrete observations"),
    (spaces.Dict({"img": IMAGE_LAST, "d": spaces.Discrete(3)}), r"has Dict observations .* that hold no Box but images and discrete parts"),
])
def test_normalize_obs_with_nothing_to_normalize_is_refused(space, match):
    with pytest.raises(ValueError, match=rf"env.normalize_obs=true: env.id='X-v0' {match}.*nothing to normalize"):
        norm_obs_keys(space, "X-v0")


def test_sb3_is_given_raw_observations_and_normalizes_only_the_dicts_box_keys():
    agent = SB3PPO(EnvConfig("lab/SimpleMultiObs-v0", num_envs=2, normalize_obs=True), ADAM, num_steps=8,
                   batch_size=8)
    agent.check_env()
    assert agent.policy == "MultiInputPolicy" and agent.model_device() == "auto"  # a CNN for the image part
    venv = agent.make_vec_env()
    eval_env = agent.make_eval_env(2)
    try:
        assert isinstance(venv, VecNormalize) and venv.norm_obs_keys == ["vec"]
        assert isinstance(eval_env.single_observation_space, spaces.Dict)  # raw, and not normalized
        assert find_wrapper(eval_env, NormalizeObservation) is None
    finally:
        venv.close()
        eval_env.close()


def test_evaluation_normalizes_with_the_vecnormalize_statistics(tmp_path):
    agent = SB3PPO(EnvConfig("lab/SimpleMultiObs-v0", num_envs=2, normalize_obs=True), ADAM, num_steps=8,
                   batch_size=8, eval_episodes=2)
    venv = agent.make_vec_env()
    venv.obs_rms["vec"].mean[:] = 0.5
    venv.obs_rms["vec"].var[:] = 0.25
    seen = []

    class Model:
        vec_normalize = venv

        def get_vec_normalize_env(self):
            return self.vec_normalize

        def predict(self, obs, deterministic):
            seen.append(obs)
            return np.zeros(len(obs["vec"]), dtype=np.int64), None

    grid = gym.make("lab/SimpleMultiObs-v0").unwrapped  # every state's observation: a column vector, a row image
    columns = np.unique([m["vec"] for m in grid.state_mapping], axis=0)
    rows = np.unique([m["img"] for m in grid.state_mapping], axis=0)

    def check(model):
        seen.clear()
        agent.evaluate_policy(model, 2)
        for obs in seen[:5]:
            for vec, img in zip(obs["vec"], obs["img"], strict=True):
                raw = vec * np.sqrt(0.25 + 1e-8) + 0.5  # normalized with the statistics set above, and only so
                assert np.abs(columns - raw).max(axis=1).min() < 1e-6 and np.abs(columns - vec).max(axis=1).min() > 0.01
                assert (rows == img).all(axis=(1, 2, 3)).any()  # images as they are: SB3 scales them itself

    try:
        check(Model())
        venv.save(str(tmp_path / "last.vecnormalize.pkl"))  # a checkpoint's statistics, read back by load
        with (tmp_path / "last.vecnormalize.pkl").open("rb") as f:
            agent.loaded_normalizer = pickle.load(f)
        loaded = Model()
        loaded.vec_normalize = None
        check(loaded)
    finally:
        venv.close()


@pytest.mark.parametrize(("env_id", "policy", "net_arch"), [
    ("CartPole-v1", "MlpPolicy", {"pi": [64, 64], "vf": [64, 64]}),
    ("lab/SimpleMultiObs-v0", "MultiInputPolicy", {"pi": [64, 64], "vf": [64, 64]}),
    ("ALE/Pong-v5", "CnnPolicy", None),  # SB3's CnnPolicy: the Nature CNN straight into the heads
])
def test_net_arch_goes_to_the_mlp_towers(env_id, policy, net_arch):
    env = EnvConfig(env_id, atari=env_id.startswith("ALE/"), frame_stack=4 if env_id.startswith("ALE/") else 1)
    agent = SB3PPO(env, ADAM, num_steps=64, batch_size=64)
    agent.check_env()
    assert agent.policy == policy
    assert agent.model_kwargs(None)["policy_kwargs"].get("net_arch") == net_arch


# --- Any SB3 algorithm by name (agent=sb3) ----------------------------------------------------------------------

def sb3(**kwargs):
    return SB3Algorithm(EnvConfig(kwargs.pop("env", "CartPole-v1")), **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"algo": "TRPO"}, r"agent.algo='TRPO' is not a Stable-Baselines3 algorithm .* valid choices: A2C, PPO, DQN, SAC, "
                       r"TD3, DDPG"),
    ({"algo": "SAC", "hyperparams": {"n_epochs": 5}},
     r"agent.hyperparams.n_epochs=5: Stable-Baselines3's SAC takes no argument `n_epochs`; its arguments: "
     r"learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq"),
    ({"algo": "PPO", "hyperparams": {"lerning_rate": None}}, r"PPO takes no argument `lerning_rate`"),  # even unset
    ({"hyperparams": {"seed": 3}}, r"agent.hyperparams.seed: the lab sets PPO's `seed` argument itself; use seed=<n>"),
    ({"hyperparams": {"device": "cuda"}}, r"use trainer.accelerator=cpu\|gpu\|auto"),
    ({"hyperparams": {"env": "CartPole-v1"}}, r"use env=<name> or env.id=<id>"),
    ({"hyperparams": {"policy": "CnnPolicy"}}, r"use agent.policy"),
    ({"hyperparams": {"verbose": 1}}, r"`verbose`.*logger="),
    ({"hyperparams": {"tensorboard_log": "tb"}}, r"use logger=tensorboard"),
    ({"hyperparams": {"_init_setup_model": False}}, r"`_init_setup_model`"),
    ({"hyperparams": {"policy_kwargs": {"net_arch": [8]}}}, r"use agent.policy_kwargs"),
    ({"algo": "TD3", "hyperparams": {"action_noise": "normal"}}, r"use agent.action_noise"),
    ({"hyperparams": {"learning_rate": "lin_abc"}}, r"learning_rate='lin_abc' is not valid: lin_<number>"),
    ({"algo": "DQN", "hyperparams": {"train_freq": [4, "epoch"]}}, r"train_freq=\[4, 'epoch'\] is not valid"),
    ({"policy_kwargs": {"net_arc": [8]}}, r"agent.policy_kwargs.net_arc=\[8\]: PPO's policy \(ActorCriticPolicy\) "
                                          r"takes no argument `net_arc`; its arguments: net_arch, activation_fn"),
    ({"policy_kwargs": {"activation_fn": "swish"}}, r"agent.policy_kwargs.activation_fn='swish' is not valid; valid "
                                                    r"choices: relu"),
    ({"policy_kwargs": {"optimizer_class": "torch.optim.Adamm"}}, r"optimizer_class='torch.optim.Adamm' cannot be "
                                                                  r"imported"),
    ({"action_noise": {"type": "normal", "std": 0.1}}, r"PPO takes no action noise \(SAC, TD3 and DDPG do"),
    ({"algo": "TD3", "action_noise": {"type": "pink"}}, r"agent.action_noise.type='pink' is not valid; valid "
                                                        r"choices: normal, ornstein_uhlenbeck"),
    ({"algo": "TD3", "action_noise": {"type": "normal", "std": 0.1, "theta": 0.2}},
     r"agent.action_noise.theta=0.2: normal noise takes std only"),
    ({"algo": "TD3", "action_noise": {"type": "normal", "std": -1}}, r"agent.action_noise.std=-1 is not valid"),
    ({"policy": "RecurrentPolicy"}, r"agent.policy='RecurrentPolicy' is not valid; valid choices: auto, MlpPolicy"),
    ({"policy": "MlpPolicy", "encoder": "cnn"}, r"agent.policy='MlpPolicy' and agent.encoder='cnn' both choose"),
    ({"encoder": "resnet"}, r"agent.encoder='resnet' is not valid; valid choices: auto, mlp, cnn, nature_cnn"),
])
def test_sb3_algorithm_keys_are_checked_before_anything_is_built(kwargs, match, monkeypatch):
    monkeypatch.setattr(EnvConfig, "spaces", lambda self: pytest.fail("an env was built"))
    with pytest.raises(ValueError, match=match):
        sb3(**kwargs)


def test_sb3_algorithm_takes_zoo_hyperparameters():
    agent = sb3(algo="td3", env="Pendulum-v1",  # any case
                hyperparams={"gamma": 0.98, "buffer_size": 200_000, "learning_starts": 10_000, "learning_rate": 1e-3,
                             "n_epochs": None},  # another algorithm's key left unset: SB3's default
                policy_kwargs={"net_arch": [400, 300], "activation_fn": "tanh", "n_critics": None},
                action_noise={"type": "normal", "std": 0.1})
    agent.check_env()
    assert agent.algorithm is TD3 and agent.policy == "MlpPolicy" and agent.gamma == 0.98
    venv = agent.make_vec_env()
    try:
        kwargs = agent.model_kwargs(venv)
    finally:
        venv.close()
    noise = kwargs.pop("action_noise")
    assert isinstance(noise, NormalActionNoise) and noise._sigma.tolist() == [0.1]
    assert kwargs == {"gamma": 0.98, "buffer_size": 200_000, "learning_starts": 10_000, "learning_rate": 1e-3,
                      "policy_kwargs": {"net_arch": [400, 300], "activation_fn": torch.nn.Tanh}}
    assert sb3(algo="PPO").gamma == 0.99  # SB3's default, for VecNormalize's return statistics
    schedule = sb3(hyperparams={"learning_rate": "lin_1e-3"}).kwargs["learning_rate"]
    assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.25) == pytest.approx(2.5e-4)
    assert sb3(algo="SAC", hyperparams={"train_freq": [1, "episode"]}).kwargs["train_freq"] == (1, "episode")
    ou = sb3(algo="DDPG", action_noise={"type": "ornstein_uhlenbeck", "std": 0.2, "theta": 0.3}).noise
    assert isinstance(make_action_noise(ou, (2,)), OrnsteinUhlenbeckActionNoise)


@pytest.mark.parametrize(("kwargs", "policy"), [
    ({}, "MultiInputPolicy"),
    ({"policy": "MultiInputPolicy"}, "MultiInputPolicy"),
])
def test_sb3_algorithm_policy_by_space_or_by_name(kwargs, policy):
    agent = sb3(env="lab/SimpleMultiObs-v0", **kwargs)
    agent.check_env()
    assert agent.policy == policy
    with pytest.raises(ValueError, match=r"agent.policy='MlpPolicy' gives SB3's MlpPolicy, which cannot take Dict"):
        sb3(env="lab/SimpleMultiObs-v0", policy="MlpPolicy").check_env()
    with pytest.raises(ValueError, match=r"agent.policy='MultiInputPolicy': SB3's MultiInputPolicy takes Dict "
                                         r"observations only"):
        sb3(policy="MultiInputPolicy").check_env()


def test_the_listed_hyperparameters_are_arguments_of_some_algorithm(tmp_path):
    from helpers import make_cfg

    cfg = make_cfg(["family=rl", "agent=sb3"], tmp_path, None, smoke=False)
    known = {k for cls in ALGORITHMS.values() for k in constructor_keys(cls)}
    assert set(cfg.agent.hyperparams) <= known
    assert all(v is None for v in cfg.agent.hyperparams.values())  # SB3's defaults unless set
    cfg = make_cfg(["family=rl", "agent=sb3", "agent.hyperparams.learning_rate=1e-3",  # no `+` for the listed ones
                    "+agent.hyperparams.target_policy_noise=0.3"], tmp_path, None, smoke=False)
    assert cfg.agent.hyperparams.learning_rate == 1e-3 and cfg.agent.hyperparams.target_policy_noise == 0.3


def test_sps_excludes_the_evaluations_as_our_agents_count_it():
    seen = []
    writer = _ToLabLoggers([SimpleNamespace(log_metrics=lambda metrics, step: seen.append(metrics))], log_interval=1,
                           clock=lambda: 4.0)  # 4 s of training, whatever the evaluations took
    writer.write({"time/fps": 100, "time/total_timesteps": 1000}, {}, step=1000)
    assert seen[0]["time/sps"] == 250.0 and seen[0]["time/train_seconds"] == 4.0


def test_a2c_policy_loss_is_logged_as_pg_loss():
    seen = []
    writer = _ToLabLoggers([SimpleNamespace(log_metrics=lambda metrics, step: seen.append(metrics))], log_interval=1)
    writer.write({"train/policy_loss": 0.5, "train/actor_loss": 1.0}, {}, step=1)
    assert seen == [{"train/pg_loss": 0.5, "train/actor_loss": 1.0}]
