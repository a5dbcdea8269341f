"""Publishing a run's candidate as the shadow: asked for (`--shadow`), or a rejected but close candidate
(`--shadow-if-close`); and what the gate calls close."""
from __future__ import annotations

import pytest

from retrain_job.__main__ import job_options, parse_args
from retrain_job.metrics import MetricsTarget
from retrain_job.train import fit as train
from retrain_job.train.gate import CLOSE_FACTOR, GatePolicy, Tolerances, Verdict, judge
from retrain_job.train.run import Candidate, Clock, DriftOutcome, JobOptions, publish_candidate
from shared.pointer import read_pointer
from shared.settings import Settings
from tests.support.bundles import FAST_PARAMS, as_version, publish

STABLE, CANDIDATE = "20261101T000000Z-stable00", "20261102T000000Z-candidat"
QUIET = DriftOutcome({"status": "no_drift"}, "reports/penguins/drift/x/", review=False)


@pytest.fixture
def candidate(local_store, trained_bundle) -> Candidate:
    publish(local_store, trained_bundle, STABLE)
    return Candidate(as_version(trained_bundle, CANDIDATE), {})


@pytest.mark.parametrize(("opts", "verdict", "decision"), [
    (JobOptions(shadow=True, shadow_percent=30.0), Verdict(True), "shadow"),
    (JobOptions(shadow=True, canary_percent=10.0), Verdict(True), "shadow"),  # shadow wins over canary
    (JobOptions(shadow_if_close=True), Verdict(False, ["log loss"], close=True), "shadow"),
    (JobOptions(shadow_if_close=True), Verdict(False, ["log loss"], close=False), "rejected"),
    (JobOptions(shadow=True), Verdict(False, ["log loss"], close=True), "rejected"),  # --shadow: passing ones only
    (JobOptions(shadow_if_close=True), Verdict(True), "promoted"),
])
def test_what_is_published_as_the_shadow(local_store, candidate, opts, verdict, decision):
    outcome = publish_candidate(local_store, opts, candidate, verdict, QUIET, clock=Clock())
    pointer, _ = read_pointer(local_store, "penguins")
    assert outcome.decision == decision
    if decision == "shadow":
        assert (pointer.stable, pointer.canary, pointer.shadow) == (STABLE, None, CANDIDATE)
        assert pointer.shadow_percent == opts.shadow_percent
        assert outcome.to_dict()["pointer"]["shadow"] == CANDIDATE
    elif decision == "rejected":
        assert (pointer.stable, pointer.shadow) == (STABLE, None)


def test_the_first_version_of_a_model_is_stable_even_when_shadow_is_asked(local_store, trained_bundle):
    outcome = publish_candidate(local_store, JobOptions(shadow=True), Candidate(trained_bundle, {}), Verdict(True),
                                QUIET, clock=Clock())
    assert outcome.decision == "promoted" and read_pointer(local_store, "penguins")[0].shadow is None


def test_flags_and_settings_reach_the_options():
    settings = Settings.from_env({"SHADOW_IF_CLOSE": "1", "SHADOW_PERCENT": "40"}, reader="job")
    args = parse_args(["--shadow", "--model", "penguins"], settings)
    opts = job_options(args, settings, MetricsTarget(project=None))
    assert (opts.shadow, opts.shadow_if_close, opts.shadow_percent) == (True, True, 40.0)
    with pytest.raises(ValueError, match="shadow percent"):
        JobOptions(shadow_percent=0.0)


def test_widened_policy_scales_every_tolerance_and_keeps_the_floors():
    policy = GatePolicy(0.01, accuracy_tolerance=0.02, macro_f1_tolerance=0.03, accuracy_floor=0.9,
                        roc_auc_tolerance=0.04, coverage_min=0.8, coverage_max=0.99)
    wide = policy.widened(CLOSE_FACTOR)
    assert (wide.tolerance, wide.accuracy_tolerance, wide.macro_f1_tolerance, wide.roc_auc_tolerance) == tuple(
        CLOSE_FACTOR * t for t in (0.01, 0.02, 0.03, 0.04))
    assert (wide.accuracy_floor, wide.coverage_min, wide.coverage_max) == (0.9, 0.8, 0.99)


def test_close_is_a_rejection_within_the_widened_tolerances(penguins_spec, trained_bundle, base_data):
    data = train.prepare(penguins_spec, base_data)
    weaker = train.build_candidate(data, {**FAST_PARAMS, "num_boost_round": 8}, [])
    holdout = data.split.holdout
    same = judge(penguins_spec, trained_bundle, trained_bundle, holdout)
    assert same.passed and not same.close  # passing is not close
    gap = judge(penguins_spec, weaker, trained_bundle, holdout).candidate["log_loss"] - same.candidate["log_loss"]
    assert gap > 0

    def verdict(widened_tolerance: float) -> Verdict:  # the log loss tolerance CLOSE_FACTOR times as wide
        tolerance = widened_tolerance / CLOSE_FACTOR
        return judge(penguins_spec, weaker, trained_bundle, holdout, Tolerances(1.0, 1.0, tolerance, None))

    near, far = verdict(1.2 * gap), verdict(0.8 * gap)
    assert not near.passed and near.close
    assert not far.passed and not far.close
