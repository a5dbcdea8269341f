"""Training: the feature contract from the data, a seeded cross-validated search, and the candidate bundle.

Rows are encoded with `shared.features.build_batch`, the function's own code, so training and serving
cannot disagree about the column layout.
"""
from __future__ import annotations

import itertools
import platform
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from retrain_job.data import LABEL, NUMERIC, LabelledData, fingerprint, to_records
from shared.bundle import MODEL_FILE, TREES_FILE, Bundle, make_bundle, new_version
from shared.contract import PHYSICAL_LIMITS, CategoricalFeature, FeatureContract, NumericFeature
from shared.examples import SEED_EXAMPLES
from shared.features import build_batch
from shared.predictor import TreeEnsemble

SEED = 20240601
HOLDOUT_FRACTION = 0.2
CV_FOLDS = 5
SEARCH_GRID = {"max_depth": (2, 3, 4), "num_boost_round": (30, 60, 120), "eta": (0.1, 0.3)}
VERIFY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Split:
    """Training rows and the frozen holdout the gate compares models on."""

    train: pd.DataFrame
    holdout: pd.DataFrame


def split(df: pd.DataFrame, seed: int = SEED) -> Split:
    """Stratified, seeded split: the same data always gives the same holdout."""
    train, holdout = train_test_split(df, test_size=HOLDOUT_FRACTION, random_state=seed, stratify=df[LABEL])
    return Split(train.reset_index(drop=True), holdout.reset_index(drop=True))


def split_with_frozen_holdout(base: pd.DataFrame, labelled: pd.DataFrame, seed: int = SEED) -> Split:
    """The base data's seeded holdout stays frozen across runs; new labelled rows all go to training."""
    fixed = split(base, seed)
    if labelled.empty:
        return fixed
    return Split(pd.concat([fixed.train, labelled], ignore_index=True), fixed.holdout)


def build_contract(train: pd.DataFrame, labels: tuple[str, ...]) -> FeatureContract:
    """Numeric ranges and category levels as seen in the training rows."""
    numeric = tuple(
        NumericFeature(name, *PHYSICAL_LIMITS[name], float(train[name].min()), float(train[name].max()))
        for name in NUMERIC)
    categorical = (
        CategoricalFeature("island", tuple(sorted(train["island"].dropna().unique())), required=True),
        CategoricalFeature("sex", tuple(sorted(train["sex"].dropna().unique())), required=False),
    )
    return FeatureContract(numeric, categorical, labels)


def encode(df: pd.DataFrame, contract: FeatureContract, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (through the serving code) and integer labels."""
    x = build_batch(contract, to_records(df)).matrix
    y = df[LABEL].map({label: i for i, label in enumerate(labels)}).to_numpy()
    return x, y


@dataclass(frozen=True)
class TrainingData:
    """Everything a run trains and gates on: the rows, their split, and the training rows encoded once."""

    base: pd.DataFrame
    labelled: LabelledData
    rows: pd.DataFrame  # base and labelled together: what the fingerprint covers
    split: Split
    contract: FeatureContract
    labels: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray

    def sources(self) -> list[dict]:
        """Where the rows came from, for the manifest: the base set and each labelled file that added rows."""
        return [{"name": "palmerpenguins", "rows": int(len(self.base))},
                *[{"name": f["key"], "sha256": f["sha256"], "rows": f["rows"]}
                  for f in self.labelled.files if f["rows"]]]


def prepare(base: pd.DataFrame, labelled: LabelledData | None = None) -> TrainingData:
    """Combine base and labelled rows, split with the frozen holdout, build the contract and encode, once."""
    labelled = labelled if labelled is not None else LabelledData.none()
    rows = base if labelled.rows.empty else pd.concat([base, labelled.rows], ignore_index=True)
    split_ = split_with_frozen_holdout(base, labelled.rows)
    labels = tuple(sorted(rows[LABEL].unique()))
    contract = build_contract(split_.train, labels)
    x, y = encode(split_.train, contract, labels)
    return TrainingData(base, labelled, rows, split_, contract, labels, x, y)


def fit(x: np.ndarray, y: np.ndarray, params: dict, n_classes: int, seed: int = SEED) -> xgb.Booster:
    """One seeded, single-threaded XGBoost fit (deterministic)."""
    booster_params = {"objective": "multi:softprob", "num_class": n_classes, "seed": seed, "nthread": 1,
                      "max_depth": params["max_depth"], "eta": params["eta"], "eval_metric": "mlogloss"}
    return xgb.train(booster_params, xgb.DMatrix(x, label=y), num_boost_round=params["num_boost_round"])


def metrics(proba: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, macro F1 and log loss of predicted probabilities."""
    predicted = proba.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "macro_f1": round(float(f1_score(y, predicted, average="macro")), 6),
        "log_loss": round(float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)))), 6),
        "rows": int(len(y)),
    }


def grid() -> list[dict]:
    """Every hyperparameter combination, in a fixed order (tasks split this list by index)."""
    keys = sorted(SEARCH_GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*(SEARCH_GRID[k] for k in keys))]


def cv_score(x: np.ndarray, y: np.ndarray, params: dict, n_classes: int, seed: int = SEED) -> dict:
    """Mean stratified k-fold log loss and accuracy of one parameter set."""
    losses, accs = [], []
    for train_idx, test_idx in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(x, y):
        booster = fit(x[train_idx], y[train_idx], params, n_classes, seed)
        m = metrics(booster.inplace_predict(x[test_idx]), y[test_idx])
        losses.append(m["log_loss"])
        accs.append(m["accuracy"])
    return {"params": params, "cv_log_loss": round(float(np.mean(losses)), 6),
            "cv_log_loss_se": round(float(np.std(losses) / np.sqrt(len(losses))), 6),
            "cv_accuracy": round(float(np.mean(accs)), 6)}


def model_cost(params: dict) -> int:
    """Leaves evaluated per prediction and class: what serving latency grows with."""
    return params["num_boost_round"] * 2 ** params["max_depth"]


def best_params(scores: list[dict]) -> dict:
    """The one-standard-error rule: the cheapest model whose CV log loss is within one standard error
    of the best (simpler models generalise as well and serve faster); ties go to the lower loss."""
    best = min(scores, key=lambda s: s["cv_log_loss"])
    limit = best["cv_log_loss"] + best.get("cv_log_loss_se", 0.0)
    eligible = [s for s in scores if s["cv_log_loss"] <= limit]
    return min(eligible, key=lambda s: (model_cost(s["params"]), s["cv_log_loss"]))["params"]


def verification_rows(train: pd.DataFrame) -> list[dict]:
    """Rows whose probabilities ship in the manifest so the function can verify its fast predictor."""
    return to_records(train.sample(n=min(20, len(train)), random_state=SEED)) + [dict(r) for r, _ in SEED_EXAMPLES]


def build_candidate(data: TrainingData, params: dict, search: list[dict]) -> Bundle:
    """Fit on the encoded training rows, compile and verify the fast predictor, and assemble the bundle."""
    contract, labels, x, y, split_ = data.contract, data.labels, data.x, data.y, data.split
    booster = fit(x, y, params, len(labels))
    trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
    check_rows = verification_rows(split_.train)
    check_x = build_batch(contract, check_rows).matrix
    expected = booster.inplace_predict(check_x)
    assert_same_predictions(trees, booster, x, check_x, _stress_matrix(x))
    hx, hy = encode(split_.holdout, contract, labels)
    fp = fingerprint(data.rows)
    return make_bundle(
        new_version(fp),
        {MODEL_FILE: bytes(booster.save_raw("ubj")), TREES_FILE: trees.to_bytes()},
        contract=contract.to_dict(),
        labels=list(labels),
        metrics={"holdout": metrics(booster.inplace_predict(hx), hy), "train": metrics(booster.inplace_predict(x), y)},
        params=params,
        search=search,
        training_data={"fingerprint": fp, "rows": int(len(split_.train)), "holdout_rows": int(len(split_.holdout)),
                       "sources": data.sources()},
        verification={"rows": check_rows, "probabilities": np.round(expected, 7).tolist(),
                      "tolerance": VERIFY_TOLERANCE},
        libraries={"python": platform.python_version(), "xgboost": xgb.__version__,
                   "numpy": np.__version__, "scikit-learn": sklearn.__version__},
    )


def assert_same_predictions(trees: TreeEnsemble, booster: xgb.Booster, *matrices: np.ndarray) -> None:
    """Refuse to ship a fast predictor that disagrees with XGBoost on any verification matrix."""
    for x in matrices:
        diff = trees.max_difference(x, booster.inplace_predict(x))
        if diff > VERIFY_TOLERANCE:
            raise AssertionError(f"fast predictor differs from XGBoost by {diff:g}")


def _stress_matrix(x: np.ndarray, rows: int = 2000) -> np.ndarray:
    """Random rows spanning (and exceeding) the training ranges, a fifth of the values missing."""
    rng = np.random.default_rng(SEED)
    low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    span = np.where(high > low, high - low, 1.0)
    stress = rng.uniform(low - span / 2, high + span / 2, size=(rows, x.shape[1])).astype(np.float32)
    stress[rng.random(stress.shape) < 0.2] = np.nan
    return stress
