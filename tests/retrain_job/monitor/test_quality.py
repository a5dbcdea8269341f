"""Quality per version with intervals, CBPE, calibration, guards and the canary comparison, over real sink files."""
from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from retrain_job.monitor.quality import (
    _macro_f1_from_counts,
    bootstrap_interval,
    compare_versions,
    estimate_accuracy,
    expected_calibration_error,
    monitor,
    ranking_auc,
    wilson_interval,
)
from retrain_job.train.evaluate import binary_metrics, classifier_metrics
from shared.store import LocalStore
from tests.retrain_job.data.test_logs import LABELS, NOW, SinkLog

AT = NOW - timedelta(hours=6)


@pytest.fixture
def log(tmp_path) -> SinkLog:
    return SinkLog(LocalStore(tmp_path / "bucket"))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw_truths(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One label index per row, drawn from that row's probabilities: a perfectly calibrated model."""
    return (rng.random(len(p))[:, None] > p.cumsum(axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)


def write_labelled(log: SinkLog, request_id: str, p: np.ndarray, truths: list[str], *, version: str = "v1",
                   role: str = "stable", source: str = "labelling-team", batch: int = 100) -> None:
    """Predictions (the top label of each row) in batches of one request, and feedback with every truth."""
    predicted = [LABELS[k] for k in p.argmax(axis=1)]
    for first in range(0, len(p), batch):
        log.prediction(request_id, predicted[first:first + batch], at=AT, version=version, role=role,
                       first_row=first, rows=len(p), probabilities=p[first:first + batch].tolist())
    log.feedback([{"id": f"{request_id}-{k}", "truth": t} for k, t in enumerate(truths)],
                 at=AT + timedelta(minutes=10), source=source)


def confident(correct: int, total: int) -> tuple[np.ndarray, list[str]]:
    """Rows predicting `a` at 0.9, of which `correct` are truly `a` and the rest `b`."""
    return np.tile([0.9, 0.06, 0.04], (total, 1)), ["a"] * correct + ["b"] * (total - correct)


# the hand-computed classifier set: predicted label, probabilities (a, b, c), truth
HAND = [("a", (0.7, 0.2, 0.1), "a"), ("b", (0.1, 0.8, 0.1), "b"), ("a", (0.5, 0.3, 0.2), "b"),
        ("c", (0.2, 0.2, 0.6), "c"), ("b", (0.3, 0.4, 0.3), "a")]


def test_classifier_quality_equals_a_hand_computation(log):
    log.prediction("h", [r[0] for r in HAND], at=AT, probabilities=[list(r[1]) for r in HAND])
    log.prediction("u", ["a", "c"], at=AT, probabilities=[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])  # never labelled
    log.feedback([{"id": f"h-{k}", "truth": r[2]} for k, r in enumerate(HAND)], at=AT + timedelta(minutes=1))
    report = monitor(log.join(), min_labels=5)
    v = report.version("v1", "stable")
    assert (v.task, v.labels, v.predictions, v.verdict) == ("classifier", 5, 7, "ok")
    accuracy, f1, loss = v.metrics["accuracy"], v.metrics["macro_f1"], v.metrics["log_loss"]
    assert (accuracy.value, accuracy.n, accuracy.method) == (0.6, 5, "wilson")
    assert (accuracy.low, accuracy.high) == wilson_interval(3, 5)
    # per label F1: a 2*1/(2+2), b 2*1/(2+2), c 2*1/(1+1)
    assert f1.value == pytest.approx(2 / 3) == f1_score([r[2] for r in HAND], [r[0] for r in HAND], average="macro")
    assert loss.value == pytest.approx(-(math.log(0.7) + math.log(0.8) + 2 * math.log(0.3) + math.log(0.6)) / 5)
    for m in (f1, loss):
        assert m.method == "bootstrap" and m.low <= m.value <= m.high and m.n == 5
    # CBPE over all seven predictions: the probability of each predicted label
    assert v.estimated_accuracy.value == pytest.approx((0.7 + 0.8 + 0.5 + 0.6 + 0.4 + 0.5 + 0.8) / 7)
    assert v.estimated_accuracy.n == 7
    assert v.expected_accuracy_labelled.value == pytest.approx(3.0 / 5)
    # each labelled row alone in its confidence bin: the mean gap between confidence and being right
    assert v.calibration_error == pytest.approx((0.3 + 0.2 + 0.5 + 0.4 + 0.4) / 5)
    out = json.loads(json.dumps(report.to_dict()))
    [entry] = out["versions"]
    assert entry["metrics"]["macro_f1"]["value"] == 0.666667 and entry["metrics"]["accuracy"]["value"] == 0.6
    assert out["feedback"]["joined"] == 5 and out["model"] == "clf" and out["window"]["to"] == NOW.isoformat()


def test_wilson_interval_matches_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_weights_give_the_resampled_statistic():
    rng = np.random.default_rng(5)
    x = rng.normal(10, 2, 50)
    low, high = bootstrap_interval(lambda w: w @ x / len(x), len(x), resamples=400, seed=3)
    drawn = np.random.default_rng(3).integers(0, len(x), size=(400, len(x)))
    assert (low, high) == pytest.approx(tuple(np.percentile(x[drawn].mean(axis=1), [2.5, 97.5])))
    assert bootstrap_interval(lambda w: w @ x / len(x), len(x), resamples=400, seed=3) == (low, high)  # seeded
    # macro F1 from resample weights is scikit-learn's macro F1 of the resampled rows
    truth, predicted = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    t, p = np.eye(3)[truth], np.eye(3)[predicted]
    for rows in drawn[:20, :40] % 40:
        w = np.bincount(rows, minlength=40).astype(float)
        assert _macro_f1_from_counts(w @ (t * p), w @ t, w @ p) == pytest.approx(
            f1_score(truth[rows], predicted[rows], average="macro"))


def test_cbpe_on_calibrated_probabilities_lands_on_realised_accuracy(log):
    rng = np.random.default_rng(11)
    p = softmax(rng.normal(0, 1.5, (400, 3)))
    truths = [LABELS[k] for k in draw_truths(rng, p)]
    write_labelled(log, "cal", p, truths)
    v = monitor(log.join()).version("v1")
    realised, estimate = v.metrics["accuracy"], v.estimated_accuracy
    assert estimate.n == 400 and estimate.method == "cbpe"
    assert estimate.low <= realised.value <= estimate.high
    assert realised.low <= estimate.value <= realised.high
    assert v.verdict == "ok" and v.calibration_error < 0.06


def test_cbpe_range_holds_realised_accuracy_about_as_often_as_it_says():
    rng = np.random.default_rng(2)
    inside = 0
    for _ in range(400):
        p = softmax(rng.normal(0, 1.5, (300, 3)))
        realised = np.mean(draw_truths(rng, p) == p.argmax(axis=1))
        estimate = estimate_accuracy(p.max(axis=1))
        inside += estimate.low <= realised <= estimate.high
    assert 0.92 <= inside / 400 <= 0.98


def test_truths_that_contradict_confident_probabilities_degrade_the_version(log):
    rng = np.random.default_rng(4)
    p = softmax(rng.normal(0, 3.0, (200, 3)))
    truths = [LABELS[k] for k in rng.integers(0, 3, 200)]  # the relation between inputs and truth has changed
    write_labelled(log, "shift", p, truths)
    v = monitor(log.join()).version("v1")
    assert v.verdict == "degraded" and "its probabilities expect" in v.reasons[0]


def test_expected_calibration_error_is_near_zero_when_calibrated_and_high_when_overconfident():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (20000, 3))
    p = softmax(logits)
    truths = draw_truths(rng, p)
    calibrated = expected_calibration_error(p, truths)
    overconfident = expected_calibration_error(softmax(3 * logits), truths)
    assert calibrated < 0.015 and overconfident > 0.1
    # two bins by hand: (0.9, 1] holds 0.95 right and 0.95 wrong, (0.5, 0.6] holds 0.55 right and 0.6 wrong
    two_bins = expected_calibration_error(np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.6, 0.4]]),
                                          np.array([0, 1, 0, 1]))
    assert two_bins == pytest.approx(0.5 * abs(0.5 - 0.95) + 0.5 * abs(0.5 - 0.575))
    with pytest.raises(ValueError):
        expected_calibration_error(np.empty((0, 3)), np.empty(0, dtype=int))


def test_below_the_minimum_count_numbers_are_given_without_a_verdict(log):
    p, truths = confident(10, 12)
    write_labelled(log, "few", p, truths)
    v = monitor(log.join()).version("v1")
    assert v.metrics["accuracy"].value == pytest.approx(10 / 12) and v.metrics["log_loss"].n == 12
    assert v.verdict is None and v.reasons == ("not enough labels: 12 of 30",)
    assert monitor(log.join(), min_labels=12).version("v1").verdict == "ok"


def test_canary_comparison_promotes_rolls_back_or_waits(log):
    write_labelled(log, "s", *confident(40, 40))
    write_labelled(log, "worse", *confident(32, 40), version="v2", role="canary")
    write_labelled(log, "good", *confident(39, 40), version="v3", role="canary")
    write_labelled(log, "young", *confident(10, 10), version="v4", role="canary")
    report = monitor(log.join())
    stable = report.role("stable")
    tolerance = {"accuracy": 0.05, "log_loss": 0.5}

    rollback = compare_versions(report.version("v2", "canary"), stable, tolerance)
    assert rollback.decision == "rollback"
    assert "accuracy: canary 0.8 (95% " in rollback.evidence and "worse by 0.2, tolerance 0.05 -> fails" \
        in rollback.evidence
    promote = compare_versions(report.version("v3", "canary"), stable, tolerance)
    assert promote.decision == "promote" and "worse by 0.025, tolerance 0.05;" in promote.evidence
    assert "fails" not in promote.evidence
    waiting = compare_versions(report.version("v4", "canary"), stable, tolerance)
    assert waiting.decision == "undecided" and "canary 10, stable 40" in waiting.evidence
    assert compare_versions(None, stable, tolerance).decision == "undecided"
    assert compare_versions(report.version("v3"), stable, {"rmse": 1.0}).decision == "undecided"  # nothing measured
    with pytest.raises(ValueError):
        compare_versions(report.version("v3"), stable, {"accuracy_score": 0.1})


def test_regressor_error_and_interval_coverage(log):
    predicted, truths = [10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 33.0, 40.0]
    intervals = [[8.0, 11.0], [15.0, 25.0], [25.0, 35.0], [41.0, 45.0]]
    log.prediction("r", predicted, at=AT, model="reg", intervals=intervals)
    log.feedback([{"id": f"r-{k}", "truth": t} for k, t in enumerate(truths)], at=AT + timedelta(minutes=1),
                 model="reg")
    v = monitor(log.join("reg"), min_labels=4).version("v1")
    assert v.task == "regressor" and v.estimated_accuracy is None
    assert v.metrics["rmse"].value == pytest.approx(math.sqrt((4 + 4 + 9 + 0) / 4))
    assert v.metrics["mae"].value == pytest.approx((2 + 2 + 3 + 0) / 4)
    coverage = v.metrics["coverage"]
    assert (coverage.value, coverage.n, (coverage.low, coverage.high)) == (0.5, 4, wilson_interval(2, 4))
    assert v.verdict == "degraded" and v.reasons[0].startswith("coverage 0.5 (95% 0.15 to 0.85, n=4) below")
    assert monitor(log.join("reg"), min_labels=4, interval_level=0.8).version("v1").verdict == "ok"
    judged = monitor(log.join("reg"), min_labels=4, interval_level=0.8, expected={"v1": {"rmse": 0.5, "mae": 9}})
    [reason] = judged.version("v1").reasons
    assert reason.startswith("rmse 2.062 (95% ") and reason.endswith("above the holdout's 0.5")


def test_feedback_guards_count_truths_against_confident_predictions_per_source(log):
    p = np.tile([0.95, 0.03, 0.02], (6, 1))
    write_labelled(log, "ga", p[:4], ["b", "c", "b", "a"], source="team-a")
    write_labelled(log, "gb", p[4:], ["a", "a"], source="team-b")
    log.prediction("low", ["a"], at=AT, probabilities=[[0.5, 0.3, 0.2]])
    log.feedback([{"id": "low-0", "truth": "c"}, {"id": "nowhere-0", "truth": "c"}], at=AT, source="team-b")
    guards = {g.source: g.to_dict() for g in monitor(log.join()).guards}
    assert guards["team-a"] == {"source": "team-a", "items": 4, "joined": 4, "confident": 4,
                                "confident_disagreements": 3, "confident_disagreement_share": 0.75,
                                "outside_interval": 0}
    assert (guards["team-b"]["items"], guards["team-b"]["joined"], guards["team-b"]["confident"],
            guards["team-b"]["confident_disagreements"]) == (4, 3, 2, 0)


# ---- a binary classifier -----------------------------------------------------------------------------------

BINARY = ["no", "yes"]  # (negative, positive): the positive class last, as a binary bundle's labels
THRESHOLD = 0.37
BINARY_METRICS = ("accuracy", "macro_f1", "log_loss", "roc_auc", "pr_auc", "brier", "precision", "recall", "f1")


def binary_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (no, yes) as the function logs them (6 decimals) and truths drawn from them (1: yes)."""
    p_yes = 1.0 / (1.0 + np.exp(-rng.normal(-0.6, 1.8, n)))
    proba = np.round(np.column_stack([1.0 - p_yes, p_yes]), 6)
    return proba, (rng.random(n) < proba[:, 1]).astype(int)


def write_binary(log: SinkLog, request_id: str, proba: np.ndarray, truths: np.ndarray, *, threshold: float = THRESHOLD,
                 version: str = "v1", role: str = "stable", labelled: int | None = None) -> None:
    """One request answered as a binary model answers (yes iff P(yes) >= threshold), and feedback for the first
    `labelled` rows (all by default)."""
    predicted = [BINARY[int(p >= threshold)] for p in proba[:, 1]]
    log.prediction(request_id, predicted, at=AT, version=version, role=role, probabilities=proba.tolist(),
                   labels=BINARY)
    items = [{"id": f"{request_id}-{k}", "truth": BINARY[t]} for k, t in enumerate(truths)]
    log.feedback(items[:labelled], at=AT + timedelta(minutes=10))


def test_binary_quality_is_the_offline_evaluation_of_the_same_rows(log):
    rng = np.random.default_rng(21)
    proba, y = binary_rows(rng, 400)
    write_binary(log, "bin", proba, y)
    joined = log.join()
    v = monitor(joined, binary=True, thresholds={"v1": THRESHOLD}).version("v1")
    offline = classifier_metrics(proba, y, THRESHOLD)  # retrain_job.train.evaluate: what the holdout promise is made of
    assert offline.keys() >= set(BINARY_METRICS) and offline == {**offline, **binary_metrics(proba[:, 1], y, THRESHOLD)}
    assert tuple(v.metrics) == BINARY_METRICS and (v.positive, v.threshold, v.labels) == ("yes", THRESHOLD, 400)
    for name in BINARY_METRICS:
        m = v.metrics[name]
        assert m.value == pytest.approx(offline[name], abs=1e-6), name
        assert m.low <= m.value <= m.high, name
        assert m.method == ("wilson" if name in ("accuracy", "precision", "recall") else "bootstrap"), name
    assert v.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, proba[:, 1]), abs=1e-12)
    assert v.metrics["pr_auc"].value == pytest.approx(average_precision_score(y, proba[:, 1]), abs=1e-12)
    assert v.metrics["brier"].value == pytest.approx(np.mean((proba[:, 1] - y) ** 2), abs=1e-12)
    said, hits = proba[:, 1] >= THRESHOLD, int(np.sum((proba[:, 1] >= THRESHOLD) & (y == 1)))
    precision, recall = v.metrics["precision"], v.metrics["recall"]
    assert (precision.n, (precision.low, precision.high)) == (said.sum(), wilson_interval(hits, int(said.sum())))
    assert (recall.n, (recall.low, recall.high)) == (y.sum(), wilson_interval(hits, int(y.sum())))
    for name in ("roc_auc", "pr_auc", "brier", "f1", "log_loss"):
        assert v.metrics[name].n == 400 and v.metrics[name].high - v.metrics[name].low < 0.25, name
    entry = v.to_dict()
    assert (entry["positive"], entry["threshold"], entry["task"]) == ("yes", THRESHOLD, "classifier")
    assert entry["metrics"]["roc_auc"]["value"] == pytest.approx(offline["roc_auc"], abs=1e-6)
    # the same rows as a multiclass model's: its three metrics only, and no binary fields
    plain = monitor(joined).version("v1")
    assert tuple(plain.metrics) == ("accuracy", "macro_f1", "log_loss") and plain.positive is None
    assert "positive" not in plain.to_dict() and "threshold" not in plain.to_dict()
    assert plain.metrics["log_loss"] == v.metrics["log_loss"]


def test_the_manifest_threshold_decides_precision_and_recall(log):
    rng = np.random.default_rng(22)
    proba, y = binary_rows(rng, 400)
    write_binary(log, "thr", proba, y)  # answered at THRESHOLD
    joined = log.join()
    by_threshold = {t: monitor(joined, binary=True, thresholds={"v1": t}).version("v1") for t in (0.2, THRESHOLD, 0.6,
                                                                                                  0.8)}
    for t, v in by_threshold.items():
        offline = binary_metrics(proba[:, 1], y, t)
        for name in ("precision", "recall", "f1"):
            assert v.metrics[name].value == pytest.approx(offline[name], abs=1e-6), (t, name)
        assert v.threshold == t
    recalls = [v.metrics["recall"].value for v in by_threshold.values()]
    precisions = [v.metrics["precision"].value for v in by_threshold.values()]
    assert recalls == sorted(recalls, reverse=True) and recalls[0] > recalls[-1]  # a higher bar finds fewer
    assert precisions[-1] > precisions[0]  # and is right more often when it says yes
    n_said = [v.metrics["precision"].n for v in by_threshold.values()]
    assert n_said == [int(np.sum(proba[:, 1] >= t)) for t in by_threshold]
    # what does not depend on the threshold does not move: ranking, probabilities, the served answers
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "accuracy", "macro_f1"):
        assert len({v.metrics[name] for v in by_threshold.values()}) == 1, name
    # without a threshold (a version whose manifest is gone) its logged answers are its decisions
    served = monitor(joined, binary=True).version("v1")
    assert served.threshold is None and served.to_dict()["threshold"] is None
    for name in ("precision", "recall", "f1"):
        assert served.metrics[name] == by_threshold[THRESHOLD].metrics[name]


def test_too_few_labels_or_one_class_give_no_binary_verdict_or_auc(log):
    rng = np.random.default_rng(23)
    proba, y = binary_rows(rng, 40)
    write_binary(log, "few", proba, y, labelled=12)
    v = monitor(log.join(), binary=True, thresholds={"v1": THRESHOLD},
                expected={"v1": {"roc_auc": 0.99}}).version("v1")
    assert (v.labels, v.predictions, v.verdict, v.reasons) == (12, 40, None, ("not enough labels: 12 of 30",))
    assert v.metrics["roc_auc"].n == 12  # the numbers are there, without a verdict (nor a live_* metric)
    negatives = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]] * 12)
    write_binary(log, "neg", negatives, np.zeros(36, dtype=int), version="v2")
    only_no = monitor(log.join(), binary=True, thresholds={"v2": 0.5}).version("v2")
    assert only_no.metrics["roc_auc"].value is None and only_no.metrics["pr_auc"].value is None  # one class
    assert only_no.metrics["recall"].value is None and only_no.metrics["recall"].n == 0  # no positives
    assert only_no.metrics["precision"].value == 0.0 and only_no.metrics["precision"].n == 12
    assert only_no.metrics["brier"].value == pytest.approx(np.mean(negatives[:, 1] ** 2))
    never_yes = monitor(log.join(), binary=True, thresholds={"v2": 0.95}).version("v2")
    assert never_yes.metrics["precision"].value is None and never_yes.metrics["precision"].n == 0
    assert never_yes.metrics["f1"].value == 0.0 == binary_metrics(negatives[:, 1], np.zeros(36, int), 0.95)["f1"]


def test_roc_auc_below_the_promise_degrades_and_rolls_a_canary_back(log):
    rng = np.random.default_rng(24)
    proba, y = binary_rows(rng, 300)
    write_binary(log, "s", proba, y)
    ranked_blind, _ = binary_rows(rng, 300)
    write_binary(log, "c", ranked_blind, rng.permutation(y), version="v2", role="canary")  # truths unrelated
    joined = log.join()
    stable_auc = roc_auc_score(y, proba[:, 1])
    report = monitor(joined, binary=True, thresholds={"v1": THRESHOLD, "v2": THRESHOLD},
                     expected={"v1": {"roc_auc": stable_auc - 0.02}, "v2": {"roc_auc": stable_auc - 0.02}})
    stable, canary = report.version("v1", "stable"), report.version("v2", "canary")
    assert stable.verdict == "ok" and canary.verdict == "degraded"
    [reason] = [r for r in canary.reasons if r.startswith("roc_auc")]
    assert reason.endswith(f"below the holdout's {stable_auc - 0.02:.4g}")
    assert canary.metrics["roc_auc"].high < stable_auc - 0.02 < stable.metrics["roc_auc"].high
    rollback = compare_versions(canary, stable, {"roc_auc": 0.05})
    assert rollback.decision == "rollback" and rollback.evidence.startswith("roc_auc: canary ")
    assert rollback.evidence.endswith("tolerance 0.05 -> fails")
    assert compare_versions(stable, stable, {"roc_auc": 0.05, "brier": 0.01}).decision == "promote"
    assert compare_versions(canary, stable, {"roc_auc": 1.0}).decision == "promote"  # the gate's default tolerance


def test_ranking_auc_from_resample_weights_is_scikit_learn_s_of_the_resampled_rows():
    rng = np.random.default_rng(6)
    scores = np.round(rng.random(60), 1)  # many ties
    truth = rng.random(60) < scores
    roc, average_precision = ranking_auc(scores, truth)
    assert roc[0] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert average_precision[0] == pytest.approx(average_precision_score(truth, scores), abs=1e-12)
    drawn = rng.integers(0, 60, size=(50, 60))
    weights = np.array([np.bincount(rows, minlength=60) for rows in drawn], dtype=float)
    roc, average_precision = ranking_auc(scores, truth, weights)
    for rows, r, a in zip(drawn, roc, average_precision):
        assert r == pytest.approx(roc_auc_score(truth[rows], scores[rows]), abs=1e-12)
        assert a == pytest.approx(average_precision_score(truth[rows], scores[rows]), abs=1e-12)
    one_class = ranking_auc(scores, np.zeros(60, dtype=bool))
    assert np.isnan(one_class[0][0]) and np.isnan(one_class[1][0])
