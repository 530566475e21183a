"""mode=predict of a checkpoint (settings: `predict:`), by what the run built:

- classifiers (lab.models.Classifier, any backbone; the DBN): predict.input (an image folder, an image, a .npy
  or .csv of examples; lab.modes.predict_inputs) -> predictions.csv: path or row, class, one probability per
  class; regressors (lab.models.Regressor on tabular data): one column per target, in the targets' units.
- generative models, any lab.contracts.ImageSampler (the lab's GAN / cGAN / WGAN-GP, VAE / conv VAE, RBM, or
  one's own): predict.num_samples images, each as a PNG and together as grid.png (logged as predict/samples).
- the lab's RL agents (AgentRunner): predict.episodes episodes -> episodes.csv (episode, return, length) and,
  with agent.video, a video of the first.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from lab.checks import check_ints
from lab.contracts import ImageSampler, Mode, RunContext, Runner, data_facts
from lab.data_model_runner import DataModelRunner
from lab.errors import ConfigError, building
from lab.layout import RunLayout, video_files
from lab.models import Classifier, Regressor
from lab.modes.base import load_weights, refuse
from lab.modes.predict_inputs import input_spec, read_input

log = logging.getLogger("lab")

APPLIES_TO = ("classifiers (model=classifier, any backbone; model=dbn), regressors (model=regressor), generative "
              "models (GAN, cGAN, WGAN-GP, VAE, conv VAE, RBM: any lab.contracts.ImageSampler) and the lab's RL agents "
              "(agent=ppo | dqn | sac)")


def _settings(cfg: DictConfig) -> DictConfig:
    """The `predict:` node, every key of it from conf/mode/predict.yaml (a missing one is Hydra's error)."""
    return cfg.predict


class Predict(Mode):
    """mode=predict: predictions for new inputs (classifiers, regressors), samples (generative models) or episodes (agents)."""

    def check_settings(self, cfg: DictConfig) -> None:
        p = _settings(cfg)
        with building("predict"):
            check_ints("predict.", batch_size=(p.batch_size, 1), num_samples=(p.num_samples, 1), episodes=(p.episodes, 1))
        for key in ("input", "output"):
            value = p[key]
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"predict.{key}={value!r} is not valid: it must be a path (or null).")
        if p.input and not Path(p.input).expanduser().exists():
            raise ConfigError(f"predict.input={p.input!r}: no such file or folder; give an image folder, an image "
                              "file, or a .npy / .csv file of examples (classifiers and regressors).")

    def check(self, runner: Runner, cfg: DictConfig) -> None:
        kind = family(runner)
        if kind is None:
            target = cfg.model._target_ if "model" in cfg else cfg.get("agent", {}).get("_target_", cfg.runner._target_)
            raise refuse(cfg, APPLIES_TO, f"`{target}`")
        p = _settings(cfg)
        if kind in ("classifier", "regressor"):
            with building("data", cfg.data.get("_target_")):
                spec = input_spec(runner.datamodule)
            read_input(p.input, spec)  # the whole input checked before the run folder is made
            table_path(p.output, Path(cfg.paths.output_dir))
            load_weights(runner.model, cfg.ckpt_path, cfg.mode)
            restore_datamodule(runner.datamodule, cfg.ckpt_path)
            return
        what = "a generative model samples from noise" if kind == "generative" else "an RL agent plays its env"
        if p.input is not None:
            raise ConfigError(f"predict.input={p.input!r} is for classifiers and regressors; {what} and reads no "
                              "input: leave predict.input out (null).")
        output_folder(p.output, Path(cfg.paths.output_dir), kind)
        if kind == "generative":
            load_weights(runner.model, cfg.ckpt_path, cfg.mode)
        else:
            _load_policy(runner, cfg.ckpt_path)

    def run(self, runner: Runner, context: RunContext, ckpt_path: str | None) -> dict[str, float]:
        kind = family(runner)
        if kind in ("classifier", "regressor"):
            return predict_table(runner, context, ckpt_path, kind)
        if kind == "generative":
            return sample_images(runner, context, ckpt_path)
        return play_episodes(runner, context, ckpt_path)


def family(runner: Runner) -> str | None:
    """classifier | regressor | generative | agent: what mode=predict does for the runner's model; None when
    it does not apply."""
    if isinstance(runner, DataModelRunner):
        from generative.rbm import DBN
        from lab.models import Classifier, Regressor

        if isinstance(runner.model, (Classifier, DBN)):
            return "classifier"
        if isinstance(runner.model, Regressor):
            return "regressor"
        return "generative" if isinstance(runner.model, ImageSampler) else None
    from agents.common.runner import AgentRunner

    return "agent" if isinstance(runner, AgentRunner) else None


# ---- where outputs go --------------------------------------------------------------------------------------
def table_path(output: str | None, run_dir: Path) -> Path:
    """predictions.csv: predict.output (a .csv file, or a folder to hold predictions.csv), else in the run folder."""
    if output is None:
        return RunLayout(run_dir).predictions
    path = Path(output).expanduser()
    if path.is_dir() or path.suffix == "":
        return path / RunLayout(run_dir).predictions.name
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"predict.output={output!r} is not valid: predictions are written as CSV; give a .csv "
                          "file or a folder (which gets predictions.csv), or null for <run folder>/predictions.csv.")
    return path


def output_folder(output: str | None, run_dir: Path, kind: str) -> Path:
    """The folder of a generative model's images (<run>/predictions) or an agent's episodes.csv and videos (<run>)."""
    if output is None:
        return RunLayout(run_dir).generated if kind == "generative" else run_dir
    path = Path(output).expanduser()
    if path.is_file() or path.suffix.lower() in (".csv", ".png"):
        what = "its images (grid.png, sample_NNNN.png)" if kind == "generative" else "episodes.csv and videos/"
        raise ConfigError(f"predict.output={output!r} is not valid here: for a {kind} model it is the folder that "
                          f"receives {what}, not a file.")
    return path


def _device(context: RunContext) -> torch.device:
    """The trainer's device (a GPU where the run is configured for one), else the CPU."""
    if context.trainer is None:
        return torch.device("cpu")
    return context.trainer.strategy.root_device


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Written whole under another name first, so a failure never leaves a half-written file in its place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    part.replace(path)


# ---- classifiers and regressors ----------------------------------------------------------------------------
def restore_datamodule(datamodule: Any, ckpt_path: str) -> None:
    """The data module's state as the checkpoint saved it (Lightning keeps a non-empty `state_dict()` under the
    class's name), as `trainer.test(ckpt_path=...)` restores it: e.g. a table's training statistics, so inputs
    are standardized as in training."""
    key = type(datamodule).__qualname__
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False).get(key)
    if state is None:
        return
    try:
        datamodule.load_state_dict(state)
    except (ValueError, KeyError) as e:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} does not match the configured data: {e} Run mode=predict "
                          "with the same experiment and data settings the checkpoint was trained with.") from None


def class_names(model: nn.Module, datamodule: Any, num_classes: int) -> list[str]:
    names = (model.class_names if isinstance(model, Classifier) else None) or data_facts(datamodule).classes
    names = [str(n) for n in names]
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def _columns(key: str, names: list[str], fixed: tuple[str, ...]) -> list[str]:
    """Value columns named by class / target; prefixed with p_ when a name would repeat a fixed column."""
    if set(names) & {key, *fixed} or len(set(names)) < len(names):
        return [f"p_{n}" for n in names]
    return names


def predict_table(runner: Runner, context: RunContext, ckpt_path: str, kind: str) -> dict[str, float]:
    assert isinstance(runner, DataModelRunner)
    p = _settings(context.cfg)
    spec = input_spec(runner.datamodule)
    examples = read_input(p.input, spec)
    path = table_path(p.output, context.output_dir)
    device = _device(context)
    model = load_weights(runner.model, ckpt_path, context.cfg.mode).to(device)
    restore_datamodule(runner.datamodule, ckpt_path)
    start = time.perf_counter()
    rows: list[list[Any]] = []
    outputs = []
    with torch.no_grad():
        for names, x in examples.batches(spec, int(p.batch_size)):
            y = model(x.to(device)).float()
            y = torch.softmax(y, -1) if kind == "classifier" else y
            outputs.append(y.cpu())
            rows += [[n] for n in names]
    values = torch.cat(outputs)
    if kind == "classifier":
        labels = class_names(model, runner.datamodule, values.shape[1])
        header = [examples.key, "class", *_columns(examples.key, labels, ("class",))]
        preds = values.argmax(-1).tolist()
        rows = [[*r, labels[c], *(f"{v:.6g}" for v in probs)] for r, c, probs in zip(rows, preds, values.tolist(),
                                                                                    strict=True)]
        metrics = {"predict/mean_confidence": float(values.max(-1).values.mean())}
    else:
        given = model.hparams.target_names if isinstance(model, Regressor) else None
        targets = [str(t) for t in given or data_facts(runner.datamodule).target_names]
        targets = targets if len(targets) == values.shape[1] else [f"target_{i}" for i in range(values.shape[1])]
        header = [examples.key, *_columns(examples.key, targets, ())]
        rows = [[*r, *(f"{v:.8g}" for v in vals)] for r, vals in zip(rows, values.tolist(), strict=True)]
        metrics = {f"predict/{t}_mean": float(m) for t, m in zip(targets, values.mean(0).tolist(), strict=True)}
    seconds = time.perf_counter() - start
    if path.exists():
        log.info("predict.output: replacing %s", path)
    _write_csv(path, header, rows)
    print(f"Predictions of {len(rows)} examples ({seconds:.2f} s): {path}")
    return {"predict/count": float(len(rows)), "predict/seconds": seconds, **metrics}


# ---- generative models ---------------------------------------------------------------------------------------
def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def sample_images(runner: Runner, context: RunContext, ckpt_path: str) -> dict[str, float]:
    from torchvision.transforms.v2.functional import to_pil_image
    from torchvision.utils import make_grid, save_image

    from lab.loggers import log_image_array

    assert isinstance(runner, DataModelRunner)
    p = _settings(context.cfg)
    folder = output_folder(p.output, context.output_dir, "generative")
    device = _device(context)
    model = load_weights(runner.model, ckpt_path, context.cfg.mode).to(device)
    n, batch = int(p.num_samples), int(p.batch_size)
    start = time.perf_counter()
    images, classes = [], []
    with torch.no_grad():
        for first in range(0, n, batch):
            x, y = model.sample_images(torch.arange(first, min(first + batch, n), device=device))
            images.append(x.float().clamp(0, 1).cpu())
            classes += y.tolist() if y is not None else []
    images_t = torch.cat(images)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    labels = [str(c) for c in data_facts(runner.datamodule).classes]
    width = max(4, len(str(n - 1)))
    for i, image in enumerate(images_t):  # grey images stay grey (mode L): what the model's data are
        suffix = f"_{_file_part(labels[classes[i]] if classes[i] < len(labels) else str(classes[i]))}" if classes else ""
        to_pil_image(image.mul(255).round().to(torch.uint8)).save(folder / f"sample_{i:0{width}d}{suffix}.png")
    grid = make_grid(images_t, nrow=min(model.grid_row, n), padding=2, pad_value=1.0)  # (3, H', W')
    grid = grid.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 2x: 28-pixel images are too small to judge
    save_image(grid, folder / "grid.png")
    log_image_array(context.loggers, "predict/samples", grid.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy(),
                    0)
    print(f"Samples: {n} images in {folder} (grid: {folder / 'grid.png'})")
    return {"predict/count": float(n), "predict/seconds": seconds}


# ---- RL agents -------------------------------------------------------------------------------------------------
def _load_policy(runner: Runner, ckpt_path: str) -> None:
    try:
        runner.agent.load_policy(ckpt_path)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"ckpt_path={ckpt_path!r} does not fit this agent and env: {str(e).splitlines()[0]} Run "
                          "mode=predict with the experiment and overrides it was trained with.") from None


def play_episodes(runner: Runner, context: RunContext, ckpt_path: str) -> dict[str, float]:
    from lightning.pytorch.loggers import WandbLogger

    p = _settings(context.cfg)
    agent = runner.agent
    folder = output_folder(p.output, context.output_dir, "agent")
    _load_policy(runner, ckpt_path)
    video_dir = RunLayout(folder).videos if agent.video else None
    start = time.perf_counter()
    returns, lengths = agent.evaluation_episodes(int(p.episodes), video_dir)
    seconds = time.perf_counter() - start
    path = RunLayout(folder).episodes
    _write_csv(path, ["episode", "return", "length"],
               [[i, f"{r:.8g}", int(n)] for i, (r, n) in enumerate(zip(returns, lengths, strict=True))])
    videos = video_files(video_dir) if video_dir is not None else []
    for lg in context.loggers:
        if videos and isinstance(lg, WandbLogger):
            lg.log_video("predict/video", [str(videos[0])], step=0)
    print(f"Episodes: {len(returns)} played, return {np.mean(returns):.2f} ± {np.std(returns):.2f}: {path}"
          + (f"; video: {videos[0]}" if videos else ""))
    return {"predict/count": float(len(returns)), "predict/return_mean": float(np.mean(returns)),
            "predict/return_std": float(np.std(returns)), "predict/length_mean": float(np.mean(lengths)),
            "predict/seconds": seconds}
