"""The runner of the SB3 baselines: SB3's own loop, no Lightning trainer."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from agents.common.evaluate import evaluation_lines
from agents.common.runner import build_env_and_agent
from lab.contracts import RunContext, Runner
from lab.layout import video_files


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
