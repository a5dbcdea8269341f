"""Training from a spec: the frozen holdout, the contract, a seeded cross-validated search, the candidate bundle.

Rows are encoded with `shared.validation.build_batch`, the function's own code, so training and serving
cannot disagree about the column layout. A multiclass classifier is one booster (`multi:softprob`); a binary
one is one `binary:logistic` booster whose decision threshold is chosen by the spec's `[threshold]` rule on
out-of-fold probabilities of the training rows; a regressor is one booster per input regime with an offset
or a baseline and cross-conformal intervals (`retrain_job.train.regression`).
The search scores every grid point of the spec by k-fold cross-validation inside the training rows
(stratified for a classifier, by whole groups for a regressor, each regime on its own); points that
differ only in their number of rounds share one fit, scored at each round count.

A classifier's calibration is checked at training time: the expected calibration error (top-label, 10 bins)
of out-of-fold probabilities of the training rows (each from a model fitted without that row's fold, at the
chosen parameters) and of the holdout. When the training rows' ECE is above `ECE_POOR`, the probabilities are
temperature-scaled: one T > 0 minimising the log loss of softmax(margin / T) on those out-of-fold margins
(the holdout is never fitted to, nor consulted for the decision). Dividing every leaf value and the base
margin of the booster by T keeps it a tree ensemble, so XGBoost and the compiled trees still agree exactly.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from scipy.optimize import minimize_scalar
from sklearn.model_selection import StratifiedKFold

from retrain_job.data.labelled import DataError, LabelledData, feature_names, fingerprint, to_records
from retrain_job.data.logs import Served
from retrain_job.drift.reference import reference_profile
from retrain_job.monitor.quality import expected_calibration_error
from retrain_job.train import regression
from retrain_job.train.evaluate import classifier_metrics, score, segment_metrics, serving_model
from retrain_job.train.split import SEED, frozen_holdout, group_folds, group_ids, leakage
from shared.bundle import ALL_ROWS, Bundle, make_bundle, member_files, new_version
from shared.contract import FeatureContract, derive_contract
from shared.predictor import TreeEnsemble, softmax
from shared.spec import ModelSpec, ThresholdSpec
from shared.validation import build_batch

CV_FOLDS = 5
VERIFY_TOLERANCE = 1e-5
VERIFY_SAMPLE = 20  # training rows whose outputs ship in the manifest, besides the spec's examples
VERIFY_TRAIN_ROWS = 1000  # training rows (a seeded sample) the compiled trees must reproduce before publishing
STRESS_ROWS = 1000  # random rows, beyond the training ranges and with missing values, they must reproduce too
ECE_POOR = 0.05  # out-of-fold top-label ECE (10 bins) of the training rows above which a classifier is calibrated
ECE_BINS = 10
TEMPERATURE_BOUNDS = (0.05, 20.0)  # the temperatures searched
SCALED_TOLERANCE = 1e-4  # a rescaled booster's margins must be the old ones over T within this


@dataclass(frozen=True)
class Split:
    """Training rows, the frozen holdout the gate compares models on, and how the holdout was drawn."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    info: dict


@dataclass(frozen=True)
class TrainingData:
    """Everything a run trains and gates on: the rows, their split, and the training rows encoded once."""

    spec: ModelSpec
    base: pd.DataFrame
    labelled: LabelledData
    rows: pd.DataFrame  # base and labelled together: what the fingerprint covers
    split: Split
    contract: FeatureContract
    x: np.ndarray  # the training rows through build_batch
    y: np.ndarray  # class indices (classifier) or target values (regressor)
    groups: np.ndarray | None  # a regressor's training groups (holdout grouping), else None
    intake: dict = field(default_factory=dict)  # what reading the base data found (retrain_job.data.labelled.read_base)
    served: Served | None = None  # the drift report's served rows, read beside the feedback (one parse of the logs)

    @property
    def labels(self) -> tuple[str, ...]:
        """A classifier's labels, in output order (empty for a regressor)."""
        return self.contract.labels

    def sources(self) -> list[dict]:
        """Where the rows came from, for the manifest: the base set and each labelled file that added rows."""
        spec = self.spec
        return [{"name": spec.data.file, "sha256": spec.data.sha256, "rows": int(len(self.base))},
                *[{"name": f["key"], "sha256": f["sha256"], "rows": f["rows"]}
                  for f in self.labelled.files if f["rows"]]]


def target_summary(data: TrainingData) -> dict:
    """The training rows' count per label (a classifier), or their target's quantiles and mean (a regressor)."""
    y = data.split.train[data.spec.target.name]
    if data.spec.is_classifier:
        return {"labels": {label: int((y == label).sum()) for label in data.labels}}
    q = y.astype(float).quantile([0.0, 0.05, 0.5, 0.95, 1.0]).round(4).tolist()
    return {**dict(zip(("min", "p05", "median", "p95", "max"), q)), "mean": round(float(y.mean()), 4)}


def date_range(spec: ModelSpec, rows: pd.DataFrame) -> dict | None:
    """The first and last value of the spec's `[data] period` field over the training rows (None without one)."""
    name = spec.data.period
    if not name:
        return None
    seen = rows[name].dropna().tolist()
    return {"field": name, "first": min(seen), "last": max(seen), "rows": len(seen)} if seen else None


def check_enough_rows(spec: ModelSpec, base: pd.DataFrame) -> None:
    """DataError unless the base data can fill the holdout and every cross-validation fold: each label of a
    classifier a few rows per fold after the holdout, a regressor ten rows per fold."""
    fraction = spec.holdout.fraction
    if spec.is_classifier:
        needed = math.ceil(CV_FOLDS / (1.0 - fraction)) + 1
        counts = base[spec.target.name].value_counts()
        short = {label: int(counts.get(label, 0)) for label in spec.target.labels if counts.get(label, 0) < needed}
        if short:
            raise DataError(f"target {spec.target.name!r}: {short} row(s) of these labels; each label needs at least "
                            f"{needed} (a {fraction:g} holdout and {CV_FOLDS} cross-validation folds): gather more "
                            "rows, or merge the rare labels in the data and in [target] labels")
    elif len(base) < 10 * CV_FOLDS:
        raise DataError(f"{len(base)} usable row(s); a regressor needs at least {10 * CV_FOLDS} "
                        f"({CV_FOLDS} cross-validation folds of ten rows)")


def prepare(spec: ModelSpec, base: pd.DataFrame, labelled: LabelledData | None = None) -> TrainingData:
    """Split with the base data's frozen holdout, add the labelled rows to training, derive the contract, encode."""
    check_enough_rows(spec, base)
    labelled = labelled if labelled is not None else LabelledData.none(spec)
    new = labelled.rows
    rows = base if new.empty else pd.concat([base, new], ignore_index=True)
    held = frozen_holdout(base, spec)
    info = dict(held.info)
    train_base, holdout = base[~held.mask], base[held.mask].reset_index(drop=True)
    groups = None
    if held.groups is not None:  # a regressor's: its folds and intervals keep whole groups together
        joint = group_ids(rows, spec)  # labelled rows joined to a held-out group would leak it: set aside
        held_groups = set(joint[: len(base)][held.mask].tolist())
        keep = ~np.isin(joint[len(base):], list(held_groups))
        info["labelled_rows_set_aside"] = int((~keep).sum())
        train = pd.concat([train_base, new[keep]], ignore_index=True)
        groups = pd.factorize(np.concatenate([joint[: len(base)][~held.mask], joint[len(base):][keep]]))[0]
    else:
        train = pd.concat([train_base, new], ignore_index=True) if not new.empty else train_base.reset_index(drop=True)
    info["train_rows"] = int(len(train))
    if not new.empty:  # what the labelled rows changed: leakage measured against everything trained on
        info.update(leakage(pd.concat([train, holdout], ignore_index=True),
                            np.r_[np.zeros(len(train), bool), np.ones(len(holdout), bool)], spec))
    labels = spec.labels
    contract = derive_contract(spec, to_records(train, feature_names(spec)), labels)
    x = build_batch(contract, to_records(train, contract.field_names)).matrix
    if spec.is_classifier:
        y = train[spec.target.name].map({label: i for i, label in enumerate(labels)}).to_numpy(dtype=int)
    else:
        y = train[spec.target.name].to_numpy(dtype=np.float64)
    return TrainingData(spec, base, labelled, rows, Split(train, holdout, info), contract, x, y, groups)


# ---- the search -----------------------------------------------------------------------------------------------

def member_names(spec: ModelSpec) -> list[str]:
    """The members a model is made of: a classifier's one, or a regressor's regimes in order."""
    return [r.name for r in spec.regression.regimes] if spec.regression else [ALL_ROWS]


def search_items(spec: ModelSpec) -> list[dict]:
    """One item per fit, in a fixed order (tasks split this list by index): a member and the grid point
    without its rounds; each item is scored at every `num_boost_round` of the grid."""
    keys = sorted(k for k in spec.search if k != "num_boost_round")
    points = [dict(zip(keys, values)) for values in itertools.product(*(spec.search[k] for k in keys))]
    rounds = sorted(spec.search["num_boost_round"])
    return [{"member": m, "params": p, "rounds": rounds} for m in member_names(spec) for p in points]


def metric_key(spec: ModelSpec) -> str:
    """The cross-validated metric the search minimises."""
    return "cv_log_loss" if spec.is_classifier else "cv_rmse"


def _parallel(fn: Callable, calls: list[dict]) -> list:
    """Run independent single-threaded fits on every core (XGBoost releases the GIL); results in call order."""
    if len(calls) <= 1 or (os.cpu_count() or 1) == 1:
        return [fn(**kwargs) for kwargs in calls]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(lambda kwargs: fn(**kwargs), calls))


def score_items(data: TrainingData, items: list[dict]) -> list[dict]:
    """Cross-validated scores of each item at each of its round counts."""
    spec = data.spec
    if spec.is_classifier:
        folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED).split(data.x, data.y))
        calls = [{"x": data.x, "y": data.y, "train": tr, "test": te, "params": item["params"],
                  "rounds": item["rounds"], "n_classes": len(data.labels), "binary": spec.is_binary}
                 for item in items for tr, te in folds]
        results = _parallel(_classifier_fold, calls)
    else:
        masks = group_folds(data.groups, CV_FOLDS, SEED)
        by_name = {r.name: r for r in regression.regimes(spec, data.contract)}
        calls = [{"x": data.x, "y": data.y, "train": ~test, "test": test, "regime": by_name[item["member"]],
                  "params": item["params"], "contract": data.contract, "rounds": item["rounds"]}
                 for item in items for test in masks]
        results = _parallel(regression.cv_rmse, calls)
    scores = []
    k = len(results) // max(len(items), 1)
    for i, item in enumerate(items):
        per_fold = np.array(results[i * k:(i + 1) * k])  # (folds, rounds[, 2])
        for j, rounds in enumerate(item["rounds"]):
            params = {**item["params"], "num_boost_round": rounds}
            if spec.is_classifier:
                losses, accs = per_fold[:, j, 0], per_fold[:, j, 1]
                scores.append({"member": item["member"], "params": params,
                               "cv_log_loss": round(float(np.mean(losses)), 6),
                               "cv_log_loss_se": round(float(np.std(losses) / np.sqrt(len(losses))), 6),
                               "cv_accuracy": round(float(np.mean(accs)), 6)})
            else:
                rmse = np.sqrt(per_fold[:, j])
                scores.append({"member": item["member"], "params": params,
                               "cv_rmse": round(float(np.mean(rmse)), 6),
                               "cv_rmse_se": round(float(np.std(rmse) / np.sqrt(len(rmse))), 6)})
    return scores


def classifier_params(params: dict, n_classes: int, seed: int = SEED, *, binary: bool = False) -> dict:
    """XGBoost's parameters for one single-threaded, seeded classifier fit: binary:logistic for a binary task
    (one margin, the positive class's), else multi:softprob."""
    objective = ({"objective": "binary:logistic", "eval_metric": "logloss"} if binary else
                 {"objective": "multi:softprob", "num_class": n_classes, "eval_metric": "mlogloss"})
    return {**objective, "seed": seed, "nthread": 1, **{k: v for k, v in params.items() if k != "num_boost_round"}}


def fit(x: np.ndarray, y: np.ndarray, params: dict, n_classes: int, *, seed: int = SEED,
        binary: bool = False) -> xgb.Booster:
    """One seeded, single-threaded XGBoost classifier fit (deterministic)."""
    return xgb.train(classifier_params(params, n_classes, seed, binary=binary), xgb.DMatrix(x, label=y, nthread=1),
                     num_boost_round=params["num_boost_round"])


def probabilities(booster: xgb.Booster, x: np.ndarray, **kwargs) -> np.ndarray:
    """Class probabilities (rows, labels) from XGBoost: a binary booster's P(positive) as [1 - p, p]."""
    out = np.asarray(booster.inplace_predict(x, **kwargs), dtype=np.float64)
    return np.column_stack((1.0 - out, out)) if out.ndim == 1 else out


def margin_columns(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Margins (rows, labels): a binary booster's one margin m as [0, m], whose softmax is [1 - p, p]."""
    out = np.asarray(booster.inplace_predict(x, predict_type="margin"), dtype=np.float64)
    return np.column_stack((np.zeros_like(out), out)) if out.ndim == 1 else out.reshape(len(x), -1)


def _classifier_fold(x: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray, params: dict,
                     rounds: list[int], n_classes: int, binary: bool) -> list[tuple[float, float]]:
    booster = fit(x[train], y[train], {**params, "num_boost_round": max(rounds)}, n_classes, binary=binary)
    out = []
    for r in rounds:
        m = classifier_metrics(probabilities(booster, x[test], iteration_range=(0, r)), y[test])
        out.append((m["log_loss"], m["accuracy"]))
    return out


def model_cost(params: dict) -> int:
    """Leaves evaluated per prediction and output: what serving latency grows with."""
    return params["num_boost_round"] * 2 ** params["max_depth"]


def best_params(spec: ModelSpec, scores: list[dict]) -> dict:
    """The one-standard-error rule, per member: the cheapest point whose CV metric is within one standard
    error of the best (simpler models generalise as well and serve faster); ties go to the lower metric.
    A classifier's parameters are one dict; a regressor's, one per regime."""
    key = metric_key(spec)
    chosen = {}
    for member in member_names(spec):
        mine = [s for s in scores if s.get("member", ALL_ROWS) == member]
        best = min(mine, key=lambda s: s[key])
        limit = best[key] + best.get(f"{key}_se", 0.0)
        eligible = [s for s in mine if s[key] <= limit]
        chosen[member] = min(eligible, key=lambda s: (model_cost(s["params"]), s[key]))["params"]
    return chosen[ALL_ROWS] if spec.is_classifier else chosen


# ---- the candidate ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FittedMember:
    """One booster of the candidate and its manifest entry (without file names)."""

    name: str
    booster: xgb.Booster
    section: dict


def verification_rows(data: TrainingData) -> list[dict]:
    """Rows whose outputs ship in the manifest so the function can verify its compiled trees: a seeded sample
    of training rows and the spec's example requests."""
    train = data.split.train
    sample = train.sample(n=min(VERIFY_SAMPLE, len(train)), random_state=SEED)
    return to_records(sample, feature_names(data.spec)) + [dict(e["request"]) for e in data.spec.examples()]


def fit_members(data: TrainingData, params: dict) -> list[FittedMember]:
    """The candidate's boosters: one classifier over every row, or one per regime with its baseline and interval."""
    if data.spec.is_classifier:
        booster = fit(data.x, data.y, params, len(data.labels), binary=data.spec.is_binary)
        return [FittedMember(ALL_ROWS, booster, {"name": ALL_ROWS, "needs": [], "baseline": None, "interval": None})]
    trained = regression.train_regimes(data.spec, data.contract, data.x, data.y, groups=data.groups, params=params,
                                       parallel=_parallel)
    return [FittedMember(t.regime.name, t.booster, regression.member_section(t, data.contract, "", ""))
            for t in trained]


def build_candidate(data: TrainingData, params: dict, search: list[dict]) -> Bundle:
    """Fit (and calibrate a classifier), compile and verify every member against XGBoost, assemble the bundle,
    and score it as served."""
    spec, contract = data.spec, data.contract
    check_rows = verification_rows(data)
    check_x = build_batch(contract, check_rows).matrix
    stress = _stress_matrix(data.x)
    sample = data.x[np.random.default_rng(SEED).permutation(len(data.x))[:VERIFY_TRAIN_ROWS]]
    fitted = fit_members(data, params)
    calibration = threshold = None
    if spec.is_classifier:
        [member] = fitted
        booster, calibration, oof = calibrate(data, params, member.booster)
        fitted = [replace(member, booster=booster)]
        if spec.is_binary:
            threshold = choose_threshold(spec.threshold, oof[:, 1], data.y)
    files, members, outputs = {}, [], {}
    for member in fitted:
        trees = TreeEnsemble.from_xgboost_json(member.booster.save_raw("json"))
        assert_same_predictions(trees, member.booster, sample, check_x, stress)
        model_file, trees_file = member_files(member.name)
        files[model_file] = bytes(member.booster.save_raw("ubj"))
        files[trees_file] = trees.to_bytes()
        members.append({**member.section, "model_file": model_file, "trees_file": trees_file})
        expected = np.asarray(member.booster.inplace_predict(check_x), dtype=np.float64).reshape(len(check_x), -1)
        outputs[member.name] = np.round(expected, 7).tolist()
    fp = fingerprint(data.rows, spec)
    sections = dict(
        model=spec.name,
        task=spec.task,
        contract=contract.to_dict(),
        members=members,
        params=params,
        search=search,
        training_data={"fingerprint": fp, "rows": int(len(data.split.train)),
                       "holdout_rows": int(len(data.split.holdout)), "holdout": data.split.info,
                       "sources": data.sources(), "target": target_summary(data),
                       "date_range": date_range(spec, data.split.train)},
        verification={"rows": check_rows, "outputs": outputs, "tolerance": VERIFY_TOLERANCE},
        libraries={"python": platform.python_version(), "xgboost": xgb.__version__,
                   "numpy": np.__version__, "scikit-learn": sklearn.__version__},
    )
    if spec.is_classifier:
        sections["labels"] = list(data.labels)
    if threshold is not None:
        sections["threshold"] = threshold
    version = new_version(fp)
    model = serving_model(spec, make_bundle(version, files, **sections))
    metrics = {"holdout": score(spec, model, data.split.holdout).metrics,
               "train": score(spec, model, data.split.train).metrics,
               "segments": segment_metrics(spec, model, data.split.holdout)}
    if calibration is not None:
        calibration["ece_after"]["holdout"] = metrics["holdout"]["ece"]
        calibration["log_loss_after"]["holdout"] = metrics["holdout"]["log_loss"]
        metrics["calibration"] = calibration
    reference = reference_profile(model, data.split.train, data.split.holdout)
    return make_bundle(version, files, **sections, metrics=metrics, reference=reference)


# ---- calibration -------------------------------------------------------------------------------------------

def _log_loss(margins: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(margins, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(y)), y]))


def fit_temperature(margins: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising the log loss of softmax(margins / T) (temperature scaling, Guo et al. 2017)."""
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(lambda log_t: _log_loss(margins, y, math.exp(log_t)), bounds=(low, high),
                            method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def _fold_margins(x: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray, params: dict,
                  n_classes: int, binary: bool) -> np.ndarray:
    return margin_columns(fit(x[train], y[train], params, n_classes, binary=binary), x[test])


def out_of_fold_margins(x: np.ndarray, y: np.ndarray, params: dict, n_classes: int,
                        binary: bool = False) -> np.ndarray:
    """Each training row's margins from a model fitted without its fold (stratified, seeded, as the search's)."""
    folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED).split(x, y))
    results = _parallel(_fold_margins, [{"x": x, "y": y, "train": tr, "test": te, "params": params,
                                         "n_classes": n_classes, "binary": binary} for tr, te in folds])
    margins = np.empty((len(y), n_classes), dtype=np.float64)
    for (_, test), m in zip(folds, results):
        margins[test] = np.asarray(m, dtype=np.float64).reshape(len(test), n_classes)
    return margins


def scale_margins(booster: xgb.Booster, temperature: float) -> xgb.Booster:
    """The booster with every leaf value and its base margin divided by T: margins / T from the same trees.
    (binary:logistic keeps its base score as a probability: its logit is what is divided.)"""
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    param = learner["learner_model_param"]
    base = param["base_score"]
    vector = base.startswith("[")
    logistic = learner["objective"]["name"] == "binary:logistic"

    def scaled(value: float) -> float:
        if not logistic:
            return value / temperature
        return 1.0 / (1.0 + math.exp(-math.log(value / (1.0 - value)) / temperature))

    values = [scaled(float(v)) for v in (json.loads(base) if vector else [float(base)])]
    param["base_score"] = json.dumps(values) if vector else repr(values[0])
    for tree in learner["gradient_booster"]["model"]["trees"]:
        tree["split_conditions"] = [value / temperature if left == -1 else value
                                    for value, left in zip(tree["split_conditions"], tree["left_children"])]
        tree["base_weights"] = [weight / temperature for weight in tree["base_weights"]]
    scaled = xgb.Booster()
    scaled.load_model(bytearray(json.dumps(model).encode()))
    return scaled


def _holdout_probabilities(data: TrainingData, booster: xgb.Booster) -> tuple[np.ndarray, np.ndarray]:
    holdout = data.split.holdout
    x = build_batch(data.contract, to_records(holdout, data.contract.field_names)).matrix
    index = {label: i for i, label in enumerate(data.labels)}
    y = holdout[data.spec.target.name].map(index).to_numpy(dtype=int)
    return probabilities(booster, x).reshape(len(y), -1), y


def calibrate(data: TrainingData, params: dict, booster: xgb.Booster) -> tuple[xgb.Booster, dict, np.ndarray]:
    """A classifier's booster, temperature-scaled if its out-of-fold ECE on the training rows is above ECE_POOR,
    the record of it (ECE and log loss before and after, on the training rows out of fold and on the holdout,
    measured only; the holdout's after is filled in once the bundle is scored as served), and the training
    rows' out-of-fold probabilities as the served booster would give them (scaled when it is)."""
    n_classes = len(data.labels)
    margins = out_of_fold_margins(data.x, data.y, params, n_classes, data.spec.is_binary)
    temperature = fit_temperature(margins, data.y)
    before = expected_calibration_error(softmax(margins), data.y, ECE_BINS)
    applied = before > ECE_POOR
    proba, y = _holdout_probabilities(data, booster)
    holdout = classifier_metrics(proba, y) if len(y) else {"ece": None, "log_loss": None}
    record = {
        "method": "temperature scaling", "fitted_on": f"out-of-fold margins of the training rows ({CV_FOLDS} folds)",
        "rows": int(len(data.y)), "threshold": ECE_POOR, "bins": ECE_BINS, "applied": applied,
        "temperature": round(temperature, 6),
        "ece_before": {"training_oof": round(before, 6), "holdout": holdout["ece"]},
        "ece_after": {"training_oof": round(expected_calibration_error(softmax(margins / temperature), data.y, ECE_BINS)
                                            if applied else before, 6)},
        "log_loss_before": {"training_oof": round(_log_loss(margins, data.y), 6), "holdout": holdout["log_loss"]},
        "log_loss_after": {"training_oof": round(_log_loss(margins, data.y, temperature if applied else 1.0), 6)},
    }
    if not applied:
        return booster, record, softmax(margins)
    scaled = scale_margins(booster, temperature)
    check = np.concatenate([data.x, _stress_matrix(data.x)])
    diff = float(np.max(np.abs(scaled.inplace_predict(check, predict_type="margin")
                               - booster.inplace_predict(check, predict_type="margin") / temperature)))
    if diff > SCALED_TOLERANCE:
        raise AssertionError(f"temperature-scaled booster's margins differ from margins / T by {diff:g}")
    return scaled, record, softmax(margins / temperature)


# ---- a binary model's decision threshold -------------------------------------------------------------------

def _counts_at_thresholds(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct probability as a threshold (positive iff p >= t), highest first, with the true and false
    positives it gives."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p) - 1]  # the last row of each run of equal p
    tp = np.cumsum(y_sorted)[last]
    return p_sorted[last], tp, (last + 1) - tp


def choose_threshold(rule: ThresholdSpec, p: np.ndarray, y: np.ndarray) -> dict:
    """The threshold the spec's rule picks on out-of-fold P(positive) `p` of labels `y` (1: positive), and what it
    gives there: best_f1 (highest F1), fixed (the value), min_precision (the most recall at that precision
    or better) or min_recall (the most precision at that recall or better)."""
    thresholds, tp, fp = _counts_at_thresholds(np.asarray(p, dtype=np.float64), np.asarray(y, dtype=int))
    positives = int(np.sum(y))
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(positives, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    reached = True
    if rule.rule == "fixed":
        value = float(rule.value)
    elif rule.rule == "best_f1":
        value = float(thresholds[int(np.argmax(f1))])
    else:
        achieved = precision if rule.rule == "min_precision" else recall
        ok = achieved >= rule.value
        reached = bool(ok.any())
        if not reached:
            i = int(np.argmax(achieved))
        elif rule.rule == "min_precision":
            i = int(np.flatnonzero(ok)[-1])  # the lowest threshold still precise enough: the most recall
        else:
            i = int(np.flatnonzero(ok)[0])  # the highest threshold recalling enough: the most precision
        value = float(thresholds[i])
    predicted = p >= value
    tp_at = int(np.sum(predicted & (y == 1)))
    at = {"precision": tp_at / max(int(predicted.sum()), 1), "recall": tp_at / max(positives, 1)}
    at["f1"] = 2 * at["precision"] * at["recall"] / (at["precision"] + at["recall"]) if tp_at else 0.0
    return {"value": round(value, 6), "rule": rule.rule, "rule_value": rule.value, "reached": reached,
            "fitted_on": f"out-of-fold probabilities of the training rows ({CV_FOLDS} folds)", "rows": int(len(y)),
            "training_oof": {k: round(v, 6) for k, v in at.items()}}


def assert_same_predictions(trees: TreeEnsemble, booster: xgb.Booster, *matrices: np.ndarray) -> None:
    """Refuse to ship compiled trees that disagree with XGBoost on any verification matrix."""
    for x in matrices:
        diff = trees.max_difference(x, booster.inplace_predict(x))
        if diff > VERIFY_TOLERANCE:
            raise AssertionError(f"compiled trees differ from XGBoost by {diff:g}")


def _stress_matrix(x: np.ndarray, rows: int = STRESS_ROWS) -> np.ndarray:
    """Random rows spanning (and exceeding) the training ranges, a fifth of the values missing."""
    rng = np.random.default_rng(SEED)
    low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    span = np.where(high > low, high - low, 1.0)
    stress = rng.uniform(low - span / 2, high + span / 2, size=(rows, x.shape[1])).astype(np.float32)
    stress[rng.random(stress.shape) < 0.2] = np.nan
    return stress
