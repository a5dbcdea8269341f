"""Drift calculations: each statistic on known distributions, and the thresholds' verdicts."""
from __future__ import annotations

import numpy as np

from retrain_job.drift.stats import (
    DriftThresholds,
    categorical_drift,
    chi_square,
    jensen_shannon,
    ks,
    numeric_drift,
    psi,
    share_drifted,
    wasserstein_normed,
)

RNG = np.random.default_rng(0)
T = DriftThresholds()


def test_ks_separates_shifted_from_resampled():
    ref = RNG.normal(4200, 800, 300)
    assert ks(ref, RNG.choice(ref, 300))[1] > 0.05
    assert ks(ref, ref * 1.2)[1] < 0.001


def test_wasserstein_is_in_reference_standard_deviations():
    ref = RNG.normal(0, 2, 5000)
    assert abs(wasserstein_normed(ref, ref + 1.0) - 0.5) < 0.05


def test_chi_square_and_jensen_shannon_on_categories():
    ref = ["Biscoe"] * 160 + ["Dream"] * 120 + ["Torgersen"] * 50
    same = ["Biscoe"] * 48 + ["Dream"] * 37 + ["Torgersen"] * 15
    only_biscoe = ["Biscoe"] * 100
    cats = ["Biscoe", "Dream", "Torgersen"]
    assert chi_square(ref, same, cats)[1] > 0.5
    assert chi_square(ref, only_biscoe, cats)[1] < 1e-6
    assert jensen_shannon(ref, same, cats) < 0.05 < jensen_shannon(ref, only_biscoe, cats)


def test_psi_zero_for_identical_and_large_for_disjoint():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) > 5


def test_method_follows_reference_size():
    small = numeric_drift("x", RNG.normal(size=500), RNG.normal(size=200), T)
    large = numeric_drift("x", RNG.normal(size=5000), RNG.normal(size=200), T)
    assert (small.method, large.method) == ("ks", "wasserstein_normed")
    assert not small.drifted and not large.drifted and large.p_value is None
    cat = categorical_drift("island", ["a"] * 2000, ["a"] * 90 + ["b"] * 10, T)
    assert cat.method == "jensen_shannon" and cat.drifted


def test_new_category_in_current_is_drift():
    verdict = categorical_drift("island", ["Biscoe", "Dream"] * 100, ["Biscoe", "Dream", "Anvers"] * 40, T)
    assert verdict.drifted and "Anvers" in verdict.histogram["categories"]


def test_share_of_drifted_features():
    a = numeric_drift("a", RNG.normal(size=300), RNG.normal(size=300), T)
    b = numeric_drift("b", RNG.normal(size=300), RNG.normal(3, 1, 300), T)
    assert share_drifted([a, b]) == 0.5 and share_drifted([]) == 0.0
