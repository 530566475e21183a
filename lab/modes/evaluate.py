"""mode=eval: test a checkpoint (ckpt_path) with the configured data or env, no training."""

from __future__ import annotations

from lab.contracts import Mode, RunContext, Runner


class Evaluate(Mode):
    """Test ckpt_path: the family's test split, or an agent's evaluation episodes."""

    logs_metrics = False  # testing has logged them

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        return runner.test(context, ckpt_path)
