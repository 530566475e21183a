"""`python -m lab.report`: a self-contained HTML report of a sweep, checked in headless Chromium."""

import os
import shutil
import subprocess
import sys

import pytest

from lab.report import find_runs, wandb_report

TINY = ["logger=csv", "trainer.accelerator=cpu", "~callbacks.model_summary", "agent.total_timesteps=512",
        "agent.eval_freq=128", "agent.eval_episodes=2", "env.max_episode_steps=60", "env.num_envs=2",
        "agent.num_steps=32", "agent.batch_size=32", "agent.update_epochs=2", "callbacks.progress_bar.plain=true"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    sweep = tmp / "sweep"
    cmd = [sys.executable, "-m", "lab", "-m", "experiment=ppo_cartpole", "seed=0,1", "agent.clip_coef=0.1,0.2", *TINY,
           f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp}/logs"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_html_report_of_a_sweep(sweep):
    proc = subprocess.run([sys.executable, "-m", "lab.report", str(sweep)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (sweep / "report.html").read_text()
    runs_table = page.split("<h2>Runs, best first</h2>")[1].split("</table>")[0]
    assert runs_table.count("<tr><td>") == 4  # the sweep table: every job
    assert page.count('class="plot"') >= 2 and "data:image/png;base64," in page  # curves, embedded
    assert "data:video/mp4;base64," in page  # the best runs' evaluation videos, embedded
    runs = find_runs(sweep)
    assert {r.label for r in runs} == {"agent.clip_coef=0.1", "agent.clip_coef=0.2"}  # seeds share a curve
    # over seeds (rliable): one IQM row per configuration, and the performance profile
    seeds = page.split("over seeds</h2>")[1].split("</table>")[0]
    assert seeds.count("<tr><td>") == 2 and "performance profile" in page
    for clip in ("0.1", "0.2"):
        finals = [r.result["metrics"][r.result["optimized_metric"]] for r in runs if f"agent.clip_coef={clip}" in r.overrides]
        row = seeds.split(f"agent.clip_coef={clip}")[1].split("</tr>")[0]
        iqm = float(row.split("<td>")[2].split("</td>")[0])  # two runs: the IQM is their mean
        assert len(finals) == 2 and iqm == pytest.approx(sum(finals) / 2, rel=1e-5)


def screenshot(page, shot, width: int, height: int):
    """The page as headless Chromium draws it, in grey levels (PIL image)."""
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    return Image.open(shot).convert("L")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(sweep, tmp_path):
    subprocess.run([sys.executable, "-m", "lab.report", str(sweep)], check=True, capture_output=True, timeout=300)
    img = screenshot(sweep / "report.html", tmp_path / "report.png", 1200, 1600)
    assert img.size == (1200, 1600)
    colours = img.getcolors(maxcolors=256 * 256)
    assert colours is None or len(colours) > 20  # drawn plots and text, not a blank page


def test_wandb_report_object_builds_offline():
    report = wandb_report("lab-team", "lab", "ppo_cartpole-2026-11-22_08-00-00", ["eval/return", "train/approx_kl"],
                          "lab: a sweep")
    # Built and validated (pydantic) with no network; only save() and the runset's project lookup talk to W&B.
    assert report.title == "lab: a sweep" and report.project == "lab" and report.entity == "lab-team"
    grid = report.blocks[1]
    assert [p.title for p in grid.panels[:2]] == ["eval/return", "train/approx_kl"]
    models = [p._to_model() for p in grid.panels]  # the panel specs W&B would store
    assert models[0].config.metrics == ["eval/return"] and models[0].config.x_axis == "trainer/global_step"
    assert grid.runsets[0].filters == "Group = 'ppo_cartpole-2026-11-22_08-00-00'"


@pytest.fixture(scope="module")
def gan_run(gan_cli_run):
    run_dir, _ = gan_cli_run
    subprocess.run([sys.executable, "-m", "lab.report", str(run_dir)], check=True, capture_output=True, timeout=300)
    return run_dir


def test_report_of_a_generative_run_shows_its_grids_every_scalar_and_a_final_table(gan_run):
    import re

    page = (gan_run / "report.html").read_text()
    assert "samples: first, middle and last epoch" in page
    grids = re.findall(r'<img class="grid" alt="([^"]+)"', page)
    assert grids == ["samples_epoch000.png", "samples_epoch001.png", "samples_epoch002.png"]
    groups = re.findall(r"<h3>(\w+)/</h3>", page)
    assert groups[:3] == ["train", "val", "lr"]  # in that order; test/ has one point per metric: the table
    plots = re.findall(r'<img class="plot" alt="([^"]+)"', page)
    for key in ("train/d_loss", "train/g_loss", "val/fid", "val/kl_uniform", "lr/generator", "lr/discriminator"):
        assert key in plots, key
    assert len(plots) == len(set(plots)) and not [p for p in plots if p.endswith(("_step", "_epoch"))]
    table = page.split("<table class='final'>")[1].split("</table>")[0]
    names = re.findall(r"<tr><td>([^<]+)</td><td>", table)
    assert "test/fid" in names and "train/d_loss" in names and len(names) == len(set(names))
    assert not [n for n in names if n.endswith(("_step", "_epoch"))]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_generative_report_as_a_user_sees_it(gan_run, tmp_path):
    img = screenshot(gan_run / "report.html", tmp_path / "report.png", 1200, 900)
    # the three grids sit side by side in the first screen: their band (rows 150-500) is mostly grid pixels,
    # dark digits-to-be on white padding, not the white of an empty page
    band = img.crop((0, 150, 1200, 500))
    dark = sum(1 for p in band.getdata() if p < 128) / (band.width * band.height)
    assert dark > 0.15, dark
