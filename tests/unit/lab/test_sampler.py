"""Search strategies of the lab's Optuna sweeper (hydra.sweeper.sampler): grid search visits every point once,
random / TPE / CMA-ES search intervals reproducibly from the sweeper's seed, and bad settings are clear errors."""

import itertools

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.lab_optuna_sweeper import SAMPLERS, OptunaSweeper


class Launcher:
    """Runs each job in-process: the objective is computed from the job's overrides (no training)."""

    def __init__(self, objective) -> None:
        self.objective, self.jobs = objective, []

    def launch(self, batch, initial_job_idx):
        returns = []
        for job in batch:
            params = dict(o.split("=", 1) for o in job)
            self.jobs.append(params)
            done = JobReturn(status=JobStatus.COMPLETED)
            done.return_value = self.objective(params)
            returns.append(done)
        return returns


def sweep(tmp_path, params, n_trials, objective=lambda p: 0.0, **settings):
    """(the sweeper's study results, the jobs it launched) of an in-memory study over `params`."""
    sweeper = OptunaSweeper(study_name="s", direction="min", n_trials=n_trials, n_jobs=1, pruner=None, params=params,
                            seeds=None, heartbeat_interval=1, grace_period=5,
                            **{"sampler": "tpe", "storage": None, **settings})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "optimized_metric": "val/loss"})
    sweeper.launcher = Launcher(objective)
    (results,) = sweeper.sweep([])
    return results, sweeper.launcher.jobs


def test_grid_search_visits_every_point_of_the_grid_exactly_once(tmp_path):
    params = {"model.width": "choice(16, 32, 64)", "data.batch_size": "range(1, 3)", "model.act": "choice(relu, gelu)"}
    grid = set(itertools.product(["16", "32", "64"], ["1", "2"], ["'relu'", "'gelu'"]))  # 12 points
    results, jobs = sweep(tmp_path, params, n_trials=50, sampler="grid")  # more than the grid: 12 trials
    visited = [(j["model.width"], j["data.batch_size"], j["model.act"]) for j in jobs]
    assert len(visited) == 12 and set(visited) == grid and results["n_trials"] == 12
    _, jobs = sweep(tmp_path / "again", params, n_trials=12, sampler="grid")  # n_trials = grid size
    assert sorted((j["model.width"], j["data.batch_size"], j["model.act"]) for j in jobs) == sorted(grid)


def test_grid_search_finds_the_best_point(tmp_path):
    results, _ = sweep(tmp_path, {"x": "choice(-2, -1, 0, 1, 2)", "y": "range(0, 3)"}, n_trials=15, sampler="grid",
                       objective=lambda p: (float(p["x"]) - 1) ** 2 + (float(p["y"]) - 2) ** 2)
    assert results["best_params"] == {"x": 1, "y": 2} and results["best_value"] == 0.0


def test_grid_search_of_an_interval_is_a_clear_error_before_any_job(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sweep(tmp_path, {"lr": "interval(0.1, 1)", "width": "choice(1, 2)"}, n_trials=4, sampler="grid")
    (message,) = capsys.readouterr().err.splitlines()  # one paragraph, no traceback
    assert e.value.code == 2 and message.startswith(
        "error: hydra.sweeper.sampler=grid needs a finite search space, and 'lr=interval(0.1, 1)' is an interval; "
        "give its grid as choice(a, b, ...) or range(start, stop, step)")
    assert not list(tmp_path.iterdir())  # no job folder


def test_a_study_is_resumed_only_with_its_own_sampler(tmp_path, capsys):
    storage = {"storage": f"journal://{tmp_path}/s.log"}  # a journal file: quicker to open than SQLite
    results, _ = sweep(tmp_path, {"x": "choice(1, 2)"}, n_trials=1, sampler="random", **storage)
    assert results["n_trials"] == 1
    with pytest.raises(SystemExit):
        sweep(tmp_path, {"x": "choice(1, 2)"}, n_trials=2, sampler="tpe", **storage)
    err = capsys.readouterr().err
    assert "error: hydra.sweeper.sampler=tpe but study 's' in journal://" in err
    assert "was searched with sampler=random; resume it with hydra.sweeper.sampler=random, or start a new study" in err
    results, _ = sweep(tmp_path, {"x": "choice(1, 2)"}, n_trials=2, sampler="random", **storage)
    assert results["n_trials"] == 2  # the same sampler resumes it


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes"])
def test_interval_samplers_run_and_are_seeded_by_the_sweeper(tmp_path, name):
    if name == "cmaes":
        pytest.importorskip("cmaes")
    params = {"x": "interval(-1.0, 1.0)", "y": "interval(0.0, 2.0)", "n": "int(interval(1, 8))"}

    def objective(p):
        return (float(p["x"]) - 0.25) ** 2 + (float(p["y"]) - 1.5) ** 2 + abs(int(p["n"]) - 3)

    def searched(seed):
        results, jobs = sweep(tmp_path / f"{name}{seed}", params, n_trials=10, objective=objective, sampler=name,
                              seed=seed, n_startup_trials=3)
        assert results["n_trials"] == 10 and results["sampler"] == name
        points = [(float(j["x"]), float(j["y"]), int(j["n"])) for j in jobs]
        assert all(-1 <= x <= 1 and 0 <= y <= 2 and 1 <= n <= 8 for x, y, n in points)
        return points

    first = searched(0)
    assert searched(0) == first  # the sweeper's seed fixes the search
    assert searched(1) != first


def test_each_name_builds_optunas_sampler():
    made = {n: OptunaSweeper("s", None, "min", 1, 1, n, None, {"x": "choice(1, 2)"}, None, 1, 5, seed=7)
            for n in SAMPLERS if n != "cmaes" or pytest.importorskip("cmaes")}
    optunas = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
               "grid": optuna.samplers.GridSampler, "cmaes": optuna.samplers.CmaEsSampler}
    for name, sweeper in made.items():
        space = {"x": [1, 2]} if name == "grid" else None
        sampler = sweeper._study(space).sampler
        assert [n for n, cls in optunas.items() if isinstance(sampler, cls)] == [name]
    assert made["tpe"]._study().sampler._n_startup_trials == 5  # the default, as before


def test_a_bad_sampler_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"hydra.sweeper.sampler='bayes' is not valid; valid choices: tpe, random, "
                                         r"grid, cmaes"):
        OptunaSweeper("s", None, "min", 1, 1, "bayes", None, None, None, 1, 5)


def test_sampler_arguments_are_checked_against_the_sampler_class(tmp_path):
    with pytest.raises(ValueError, match=r"sampler_kwargs has n_startup_trials, which optuna.samplers.RandomSampler "
                                         r"\(hydra.sweeper.sampler=random\) does not take here; valid keys: none"):
        sweep(tmp_path, {"x": "interval(0, 1)"}, n_trials=1, sampler="random",
              sampler_kwargs={"n_startup_trials": 3})
    results, _ = sweep(tmp_path / "tpe", {"x": "interval(0, 1)"}, n_trials=2, sampler_kwargs={"multivariate": True})
    assert results["n_trials"] == 2
    with pytest.raises(ValueError, match=r"hydra.sweeper.n_startup_trials=-1 is not valid"):
        OptunaSweeper("s", None, "min", 1, 1, "tpe", None, None, None, 1, 5, n_startup_trials=-1)


def test_the_old_form_of_tpe_arguments_still_works():
    sweeper = OptunaSweeper("s", None, "min", 1, 1, {"seed": 3, "n_startup_trials": 2}, None, None, None, 1, 5)
    sampler = sweeper._study().sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 2
    assert sweeper.seed == 3


def test_the_sweeper_config_composes_with_a_sampler_override():
    from hydra import compose, initialize_config_dir

    from lab.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=cnn_mnist", "hparams_search=cnn_mnist_optuna",
                                           "hydra.sweeper.sampler=random", "hydra.sweeper.seed=5"],
                      return_hydra_config=True)
    node = OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
    assert node["sampler"] == "random" and node["seed"] == 5 and node["n_startup_trials"] == 5
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=mlp_mnist", "hparams_search=mlp_mnist_optuna",
                                           "hydra.sweeper.sampler=cmaes"], return_hydra_config=True)
        grid = compose("config", overrides=["experiment=mlp_mnist", "hparams_search=mlp_mnist_grid"],
                       return_hydra_config=True)
    assert cfg.hydra.sweeper.study_name == "mlp_mnist_cmaes"  # a study of its own per sampler
    assert grid.hydra.sweeper.sampler == "grid" and len(grid.hydra.sweeper.params) == 3
