"""Comparisons over seeds (lab.aggregate, rliable) against their published definitions (Agarwal et al., 2021)."""

import numpy as np
import pytest
from scipy import stats

from lab.aggregate import (
    configuration,
    iqm_estimates,
    markdown,
    performance_profiles,
    scores_by_configuration,
)


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 runs: the IQM discards the lowest and highest quarter (2 each) and averages the middle four
    scores = {"a": np.array([-100.0, 1.0, 3.0, 4.0, 5.0, 6.0, 8.0, 1000.0])}
    (e,) = iqm_estimates(scores, reps=500)
    assert e.iqm == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert e.iqm == pytest.approx(stats.trim_mean(scores["a"], 0.25))
    assert e.mean == pytest.approx(np.mean(scores["a"])) and e.median == pytest.approx(4.5)
    assert e.low <= e.iqm <= e.high and e.runs == 8


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_iqms():
    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 10.0, size=12)
    (e,) = iqm_estimates({"a": x}, reps=4000, seed=1)
    # the same method by hand: resample the runs with replacement, IQM of each, 2.5 / 97.5 percentiles
    boot = np.array([stats.trim_mean(rng.choice(x, size=x.size), 0.25) for _ in range(4000)])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert e.low == pytest.approx(lo, abs=1.0) and e.high == pytest.approx(hi, abs=1.0)
    narrow = iqm_estimates({"a": rng.normal(100.0, 10.0, size=96)}, reps=4000)[0]
    assert narrow.high - narrow.low < 0.6 * (e.high - e.low)  # 8x the runs: about 1/sqrt(8) the width


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([10.0, 10.0, 10.0, 0.0])}
    taus = np.array([0.5, 2.5, 5.0, 10.0])
    profiles, bands = performance_profiles(scores, taus, reps=300)
    np.testing.assert_allclose(profiles["a"], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(profiles["b"], [0.75, 0.75, 0.75, 0.0])  # strictly above tau
    assert bands["a"].shape == (2, 4) and (bands["a"][0] <= profiles["a"] + 1e-9).all()


def test_sweep_rows_group_by_configuration_without_seed():
    rows = [{"overrides": ["agent=ppo", f"seed={s}"], "status": "ok", "metrics": {"eval/return": float(s)}}
            for s in range(3)]
    rows += [{"overrides": ["agent=sb3_ppo", "seed=0"], "status": "ok", "metrics": {"eval/return": 7.0}},
             {"overrides": ["agent=sb3_ppo", "seed=1"], "status": "failed", "metrics": {}},
             {"overrides": ["agent=sb3_ppo", "seed=2"], "status": "ok", "metrics": {"eval/return": float("nan")}}]
    scores = scores_by_configuration(rows, "eval/return")
    assert {k: v.tolist() for k, v in scores.items()} == {"agent=ppo": [0.0, 1.0, 2.0], "agent=sb3_ppo": [7.0]}
    assert configuration(["seed=3"]) == "(defaults)"
    lines = markdown(iqm_estimates(scores, reps=200), "eval/return")
    assert lines[4].startswith("| agent=sb3_ppo | 1 | 7 |")  # best IQM first
