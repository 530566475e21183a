"""Every observation and action space through the lab's PPO and DQN presets, changed only by `env.id`.

SB3's identity criteria (stable_baselines3/tests/test_identity.py, test_dict_env.py) as the lab's own: in
each identity env (agents/common/identity_envs.py) the observation names the rewarded action, so a policy
that learnt the identity scores 100 over an episode's 100 steps, and a random one 100/n. SB3's own Dict
env, SimpleMultiObs (a 4x4 grid: a 64x64x1 image per row through the Nature CNN, a vector per column), is
solved at 0.77 on average over its random starts.
"""

from pathlib import Path

import pytest

from helpers import make_cfg
from lab.errors import ConfigError
from lab.run import run

COMMON = ["logger=csv", "trainer.accelerator=cpu", "trainer.enable_model_summary=false", "~callbacks.model_summary",
          "agent.video=false", "callbacks.progress_bar.plain=true", "agent.eval_episodes=4"]


def spaces_cfg(experiment: str, env_id: str, tmp_path: Path, extra: list[str] = ()):
    return make_cfg([f"experiment={experiment}", f"env.id={env_id}", *COMMON, *extra], tmp_path, None, smoke=False)


PPO = ["agent.log_interval=2048"]
DQN = ["agent.learning_starts=500", "agent.train_freq=4", "agent.gradient_steps=4", "agent.target_update_interval=200",
       "agent.exploration_fraction=0.3", "agent.buffer_size=20000", "agent.batch_size=64", "agent.net_arch=[64,64]",
       "agent.log_interval=2000"]

IMAGE = ["+env.kwargs.size=8", "+env.kwargs.channels=1"]  # channel-last 8x8x1: cheap for a CPU

# (experiment, env id, budget in env steps, extra overrides, the known answer to reach)
LEARNS = [
    ("ppo_cartpole", "lab/IdentityDiscrete-v0", 8_000, PPO, 90),  # Discrete observations (one-hot) and actions
    ("ppo_cartpole", "lab/IdentityBox-v0", 12_000, PPO, 90),  # Box actions: a Gaussian policy
    ("ppo_cartpole", "lab/IdentityMultiDiscrete-v0", 12_000, PPO, 90),  # concatenated one-hots; one categorical each
    ("ppo_cartpole", "lab/IdentityMultiBinary-v0", 12_000, PPO, 90),  # bits as floats; Bernoulli actions
    ("ppo_cartpole", "lab/IdentityTuple-v0", 8_000, PPO, 90),  # Tuple(Discrete, Box)
    ("ppo_cartpole", "lab/IdentityImage-v0", 4_000, [*PPO, *IMAGE, "agent.update_epochs=4"], 90),  # small CNN
    ("ppo_cartpole", "lab/IdentityDict-v0", 10_000, [*PPO, "agent.update_epochs=10"], 90),  # image, Discrete, Box keys
    ("dqn_cartpole", "lab/IdentityDiscrete-v0", 6_000, DQN, 90),
    ("dqn_cartpole", "lab/IdentityTuple-v0", 6_000, DQN, 90),
    ("dqn_cartpole", "lab/IdentityImage-v0", 3_000, [*DQN, *IMAGE, "agent.gradient_steps=1"], 90),
    ("dqn_cartpole", "lab/IdentityDict-v0", 4_000, [*DQN, "agent.gradient_steps=1"], 90),
]


@pytest.mark.parametrize(("experiment", "env_id", "budget", "extra", "answer"), LEARNS,
                         ids=[f"{e.split('_')[0]}-{i.split('/')[1]}" for e, i, *_ in LEARNS])
def test_each_space_learns_its_known_answer(experiment, env_id, budget, extra, answer, tmp_path):
    cfg = spaces_cfg(experiment, env_id, tmp_path,
                     [*extra, f"agent.total_timesteps={budget}", f"agent.eval_freq={budget // 2}"])
    metrics = run(cfg)
    assert metrics["eval/return"] >= answer, metrics


@pytest.mark.parametrize(("experiment", "overrides", "match"), [
    ("dqn_cartpole", ["env.id=lab/IdentityMultiDiscrete-v0"],
     r"DQN needs a Discrete action space; env.id='lab/IdentityMultiDiscrete-v0' has MultiDiscrete\(\[4 4\]\)"),
    ("ppo_cartpole", ["env.id=lab/IdentityDiscrete-v0", "env.normalize_obs=true"],
     r"env.normalize_obs=true, but the observation space Discrete\(10\) has nothing it can normalize"),
    ("ppo_cartpole", ["env.id=lab/SimpleMultiObs-v0", "env.frame_stack=4"], "env.frame_stack=4 stacks Box observations"),
    ("ppo_cartpole", ["env.id=lab/IdentityDiscrete-v0", "agent.encoder=nature_cnn"],
     r"agent.encoder='nature_cnn' needs image observations .* Discrete\(10\)"),
    ("ppo_cartpole", ["env.id=lab/IdentityImage-v0", "agent.encoder=nature_cnn"], "at least 36x36"),
])
def test_impossible_choices_fail_before_training_naming_the_space(experiment, overrides, match, tmp_path):
    cfg = spaces_cfg(experiment, overrides[0].split("=", 1)[1], tmp_path, overrides[1:])
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not list(Path(cfg.paths.output_dir).glob("checkpoints/*"))


def test_env_kwargs_reach_the_constructor(tmp_path):
    """env.kwargs: the 8x8 map has 64 states (one-hot width 64), the slippery flag is the env's own."""
    cfg = spaces_cfg("dqn_frozenlake", "FrozenLake-v1", tmp_path,
                     ["env.kwargs.map_name=8x8", "agent.total_timesteps=200", "agent.learning_starts=100",
                      "agent.eval_freq=200", "agent.eval_episodes=1"])
    from agents.common.runner import build_env_and_agent

    env, agent = build_env_and_agent(cfg)
    assert env.spaces()[0].n == 64 and env.kwargs == {"map_name": "8x8", "is_slippery": False}
    agent.build_networks()
    assert agent.q_net.encoder.out_dim == 64


@pytest.mark.parametrize("experiment", ["ppo_cartpole", "dqn_cartpole"])
def test_sb3_dict_env_runs_with_channel_last_images(experiment, tmp_path):
    cfg = spaces_cfg(experiment, "lab/SimpleMultiObs-v0", tmp_path,
                     ["agent.total_timesteps=256", "agent.eval_freq=256", "agent.eval_episodes=2",
                      "env.max_episode_steps=20", "env.num_envs=2", "agent.learning_starts=64"]
                     if experiment == "dqn_cartpole" else
                     ["agent.total_timesteps=256", "agent.eval_freq=256", "agent.eval_episodes=2",
                      "env.max_episode_steps=20", "env.num_envs=2", "agent.num_steps=64", "agent.batch_size=64"])
    from agents.common.runner import build_env_and_agent

    _, agent = build_env_and_agent(cfg)
    agent.build_networks()
    net = agent.policy if experiment == "ppo_cartpole" else agent.q_net
    assert type(net.encoder.extractors[0]).__name__ == "NatureCNN" and net.encoder.out_dim == 256 + 5
    metrics = run(cfg)
    assert -2.0 - 1e-9 <= metrics["eval/return"] <= 1.0  # -0.1 a step for at most 20 steps, +1 at the goal


def test_ppo_learns_sb3s_dict_grid(tmp_path):
    """PPO's defaults (agent=ppo) with the settings of SB3's own run in test_sb3_spaces.py: 0.79 from 2,048 steps
    (seed 42), where a random walk scores about -8."""
    cfg = make_cfg(["family=rl", "agent=ppo", "env=gym", "env.id=lab/SimpleMultiObs-v0", *COMMON, "env.num_envs=4",
                    "agent.num_steps=128", "agent.batch_size=64", "agent.total_timesteps=4096", "agent.eval_freq=2048",
                    "agent.eval_episodes=10"], tmp_path, None, smoke=False)
    assert run(cfg)["eval/return"] >= 0.6
