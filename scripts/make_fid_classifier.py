"""Train the small classifier whose features the generative metrics use (classifier FID, mode
coverage), with the lab itself, and store it in generative/assets/classifier_<dataset>.pt.

    python scripts/make_fid_classifier.py mnist
    python scripts/make_fid_classifier.py fashion_mnist

The network is the `cnn` backbone made small (16 and 32 channels, 64 features) so the file stays
well under 1 MB (weights kept in float16). The recipe is fixed by the overrides below; the test
accuracy is printed and stored in the file.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf, open_dict

import lab  # noqa: F401
from generative.quality import DATASETS, classifier_path
from lab.layout import find_checkpoint
from lab.paths import CONFIG_DIR, ROOT
from lab.run import run

RECIPE = ["experiment=cnn_mnist", "model.backbone.channels=[16,32]", "model.backbone.hidden_size=64", "trainer.max_epochs=4",
          "logger=csv", "callbacks.progress_bar.plain=true", "seed=0"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS)
    args = p.parse_args()
    overrides = [*RECIPE, f"data={args.dataset}", f"task_name=fid_classifier_{args.dataset}"]
    if args.dataset == "fashion_mnist":
        overrides.append("data/augment=crop_flip")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "logs" / cfg.task_name / "runs" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    metrics = run(cfg)
    ckpt = find_checkpoint(cfg.paths.output_dir, "checkpoint")  # the best epoch's
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    data_cls = get_class(cfg.data._target_)
    blob = {
        "backbone": OmegaConf.to_container(cfg.model.backbone, resolve=True),  # sizes filled from the data by run()
        "backbone_state": {k.removeprefix("backbone."): v for k, v in half.items() if k.startswith("backbone.")},
        "head_state": {k.removeprefix("head."): v for k, v in half.items() if k.startswith("head.")},
        "num_classes": int(cfg.model.num_classes),
        "mean": data_cls.mean,
        "std": data_cls.std,
        "test_acc": float(metrics["test/acc"]),
        "recipe": overrides,
    }
    out = classifier_path(args.dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, out)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB, test accuracy {100 * metrics['test/acc']:.2f} %")


if __name__ == "__main__":
    main()
