"""The Outputs block a run ends with (lab/console.py)."""

import os

from lab.console import output_lines
from lab.layout import RunLayout


def test_outputs_name_the_checkpoint_newest_grid_and_video(tmp_path):
    run = RunLayout(tmp_path / "run")
    for folder in (run.checkpoints, run.media, run.videos):
        folder.mkdir(parents=True)
    run.last_checkpoint.write_bytes(b"")
    for i, name in enumerate(["samples_epoch_000.png", "samples_epoch_001.png"]):
        (run.media / name).write_bytes(b"")
        os.utime(run.media / name, (i, i))
    for i, name in enumerate(["eval_step_2000.mp4", "eval_step_1000.mp4"]):  # the newest by time, not by name
        (run.videos / name).write_bytes(b"")
        os.utime(run.videos / name, (10 + i, 10 + i))
    lines = output_lines(run, None, [tmp_path / "wandb" / "offline-run-1"])
    text = "\n".join(lines)
    assert f"best checkpoint:  {run.last_checkpoint}" in text
    assert f"last sample grid: {run.media / 'samples_epoch_001.png'}" in text
    assert f"last video:       {run.videos / 'eval_step_1000.mp4'}" in text
    assert f"W&B sync:         wandb sync {tmp_path / 'wandb' / 'offline-run-1'}" in text
    assert lines[-1] == f"  HTML report:      python -m lab.report {run.root}"


def test_a_run_without_media_names_no_media(tmp_path):
    run = RunLayout(tmp_path / "run")
    text = "\n".join(output_lines(run, None, []))
    assert "media folder" not in text and "video" not in text and "checkpoint" not in text
