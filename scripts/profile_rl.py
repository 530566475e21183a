"""Where an RL iteration's time goes: the real training loop (Lightning Trainer, the experiment's config)
with timers around the pieces it calls, evaluation excluded.

    python scripts/profile_rl.py ppo_cartpole [--iterations 120] [-o env.vectorization=vector]
    python scripts/profile_rl.py dqn_cartpole --iterations 40

Each piece is a function or method looked up by name; pieces the code does not have are left out, so
the same script profiles older and newer versions of the agents. Times are inclusive (a piece that calls
another includes it); "rest of the iteration" is the iteration's time not inside any top-level piece.
The first iterations (--warmup) are not counted. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import time
from collections import defaultdict
from typing import Any

from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.core.optimizer import LightningOptimizer
from omegaconf import open_dict

import lab  # noqa: F401
from agents.common.runner import build_env_and_agent
from lab.instantiate import instantiate
from lab.paths import CONFIG_DIR, ROOT

# (label, where, attribute, top level?): `where` is "module:qualname" (patched on the class or module) or
# "agent.<attr>" (patched on the object when training starts).
PIECES: list[tuple[str, str, str, bool]] = [
    ("env step (vector env)", "agent.envs", "step", True),
    ("policy act (rollout)", "agent.policy", "act", True),
    ("Q-network forward (acting)", "agents.dqn.module:DQN", "predict", True),
    ("final-obs values", "agent.policy", "value", True),
    ("GAE", "agents.common.buffers:compute_gae", "", True),
    ("replay sample", "agent.buffer", "sample", True),
    ("replay add", "agent.buffer", "add", True),
    ("target network update", "agents.dqn.module:DQN", "update_target", True),
    ("minibatch forward (evaluate_actions)", "agent.policy", "evaluate_actions", True),
    ("PPO loss (forward + loss)", "agents.ppo.module:ppo_loss", "", True),
    ("backward (Lightning manual_backward)", "agents.common.module:RLModule", "manual_backward", True),
    ("backward (Tensor.backward)", "torch:Tensor", "backward", True),
    ("optimizer step incl. hooks (LightningOptimizer.step)", "lightning.pytorch.core.optimizer:LightningOptimizer",
     "step", True),
    ("  gradient clipping (on_before_optimizer_step)", "agents.common.module:RLModule", "on_before_optimizer_step",
     False),
    ("  Adam step", "torch.optim:Adam", "step", False),
    ("optimizer step (RLModule.optimizer_step_on: zero_grad, backward, clip, Adam)", "agents.common.module:RLModule",
     "optimizer_step_on", True),
    ("Tensor.item (host sync)", "torch:Tensor", "item", True),
]


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = False
        self.depth = 0  # top-level pieces only count toward the "rest" figure when not nested

    def wrap(self, label: str, fn: Any, top: bool) -> Any:
        timers = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timers.active:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            timers.depth += top
            try:
                return fn(*args, **kwargs)
            finally:
                timers.depth -= top
                dt = time.perf_counter() - t0
                timers.seconds[label] += dt
                timers.calls[label] += 1
                if top and timers.depth == 0:
                    timers.seconds["__top__"] += dt

        return timed


def patch_static(timers: Timers) -> None:
    for label, where, attr, top in PIECES:
        if where.startswith("agent."):
            continue
        module_name, _, qual = where.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = module
        parts = qual.split(".")
        if attr:  # a method on a class
            owner = getattr(module, parts[0], None)
            name = attr
        else:  # a module-level function
            name = parts[0]
        if owner is None or not hasattr(owner, name):
            continue
        setattr(owner, name, timers.wrap(label, getattr(owner, name), top))


class Profile(Callback):
    def __init__(self, timers: Timers, warmup: int, iterations: int) -> None:
        self.timers, self.warmup, self.iterations = timers, warmup, iterations
        self.iter_seconds, self.eval_seconds, self.count, self.t0 = 0.0, 0.0, 0, 0.0

    def on_train_start(self, trainer: Trainer, agent: Any) -> None:
        for label, where, attr, top in PIECES:
            if not where.startswith("agent."):
                continue
            obj = agent
            for part in where.split(".")[1:]:
                obj = getattr(obj, part, None)
            if obj is not None and hasattr(obj, attr):
                setattr(obj, attr, self.timers.wrap(label, getattr(obj, attr), top))
        evaluate = agent.periodic_evaluation

        def untimed_evaluation() -> None:  # evaluation is not training: excluded, as bench_rl excludes it
            active, self.timers.active = self.timers.active, False
            t0 = time.perf_counter()
            try:
                evaluate()
            finally:
                self.eval_seconds += time.perf_counter() - t0 if active else 0.0
                self.timers.active = active

        agent.periodic_evaluation = untimed_evaluation

    def on_train_batch_start(self, trainer: Trainer, agent: Any, batch: Any, batch_idx: int) -> None:
        self.timers.active = agent.iteration >= self.warmup
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, agent: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.timers.active:
            self.iter_seconds += time.perf_counter() - self.t0
            self.count += 1
        self.timers.active = False
        if self.count >= self.iterations:
            trainer.should_stop = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment")
    p.add_argument("--iterations", type=int, default=120, help="iterations timed (after the warm-up)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = p.parse_args()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={args.experiment}", "logger=csv", "agent.video=false",
                                           *args.override])
    with open_dict(cfg):
        cfg.trainer.pop("max_epochs", None)
    seed_everything(cfg.seed)
    timers = Timers()
    patch_static(timers)
    _, agent = build_env_and_agent(cfg)
    profile = Profile(timers, args.warmup, args.iterations)
    trainer = instantiate(cfg.trainer, "trainer", callbacks=[profile], logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=str(ROOT / "logs" / "profile_rl"))
    agent.world_size = trainer.world_size
    trainer.fit_loop.max_epochs = agent.num_epochs
    trainer.fit(agent)
    n = max(profile.count, 1)
    per_iter_ms = 1e3 * profile.iter_seconds / n
    steps = agent.steps_per_iteration
    print(f"\n{args.experiment} {' '.join(args.override)}: {profile.count} iterations of {steps} env steps timed, "
          f"{per_iter_ms:.2f} ms per iteration = {steps / (per_iter_ms / 1e3):.0f} env steps/s (evaluation excluded, "
          f"{profile.eval_seconds:.1f} s of it); {LightningOptimizer.__name__} hooks included where used")
    print("| piece | calls / iteration | µs / call | ms / iteration | share |")
    print("|---|---|---|---|---|")
    for label, *_ in PIECES:
        if timers.calls.get(label):
            s, c = timers.seconds[label], timers.calls[label]
            print(f"| {label} | {c / n:.1f} | {1e6 * s / c:.1f} | {1e3 * s / n:.2f} | {100 * s / profile.iter_seconds:.0f} % |")
    rest = profile.iter_seconds - timers.seconds["__top__"]
    print(f"| rest of the iteration (buffers, statistics, schedules, Python) | | | {1e3 * rest / n:.2f} | "
          f"{100 * rest / profile.iter_seconds:.0f} % |")
    print(f"| **iteration** | 1 | | {per_iter_ms:.2f} | 100 % |")


if __name__ == "__main__":
    main()
