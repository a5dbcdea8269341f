"""A regressor from its spec: one booster per input regime over a least-squares baseline, with conformal intervals.

Each regime (`[[regression.regimes]]`) serves the rows having every input it `needs`; the last needs
nothing and serves the rest. A regime answers from its needed inputs and the required features only:
every other optional numeric feature is masked (NaN) in its training, so it never learns to lean on an
input a request may leave out. Its baseline is fitted by least squares on the log scale,

    log b(x) = intercept[level of the group feature] + sum_j beta_j * log x_j   (its `baseline` inputs),

with a pooled intercept for a missing or unseen level, and its booster (`reg:squarederror`) learns
z = log y - log b(x). A prediction b(x) * exp(margin) therefore follows its inputs beyond the largest
target seen in training instead of stopping there as trees alone do.

Intervals are split conformal: a seeded share of the training groups is held out as the calibration
set, the booster and the baseline are fitted on the rest, and the half-width q (log scale) is the
ceil((n + 1) * level) / n quantile of |z - margin| on the calibration rows, per level of the group
feature that has enough of them, else pooled. The interval is b(x) * exp(margin -/+ q).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from retrain_job.split import SEED, grouped_mask
from shared.contract import FeatureContract
from shared.predictor import Baseline, Interval
from shared.spec import ModelSpec

UNSEEN_MASK_FRACTION = 0.1  # categories masked in training, so that a level never seen serves as missing


@dataclass(frozen=True)
class Regime:
    """A spec regime resolved against the contract's columns."""

    name: str
    needs: tuple[int, ...]
    masked: tuple[int, ...]  # optional numeric columns it does not need: NaN in its training
    baseline_columns: tuple[int, ...]
    group_columns: tuple[int, ...]
    need_names: tuple[str, ...] = ()
    group: str | None = None

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Which rows this regime trains on: those having every input it needs."""
        if not self.needs:
            return np.ones(x.shape[0], dtype=bool)
        return ~np.isnan(x[:, list(self.needs)]).any(axis=1)

    def view(self, x: np.ndarray) -> np.ndarray:
        """The rows as this regime sees them: the optional inputs it does not need masked."""
        out = x.copy()
        if self.masked:
            out[:, list(self.masked)] = np.nan
        return out


def regimes(spec: ModelSpec, contract: FeatureContract) -> tuple[Regime, ...]:
    """The spec's regimes with column indices into the contract."""
    columns = contract.columns
    group = spec.regression.group
    group_columns = tuple(i for i, c in enumerate(columns) if group and c.startswith(f"{group}="))
    optional = [f.name for f in contract.numeric if not f.required]
    return tuple(Regime(r.name, tuple(columns.index(n) for n in r.needs),
                        tuple(columns.index(n) for n in optional if n not in r.needs),
                        tuple(columns.index(n) for n in r.baseline), group_columns, r.needs, group)
                 for r in spec.regression.regimes)


def fit_baseline(x: np.ndarray, y: np.ndarray, regime: Regime) -> Baseline:
    """Least squares of log y on one intercept per group level and the logs of the baseline inputs."""
    logs = np.log(x[:, list(regime.baseline_columns)].astype(np.float64))
    target = np.log(y)
    levels = (x[:, list(regime.group_columns)] == 1.0) if regime.group_columns else np.ones((len(y), 1), bool)
    known = levels.any(axis=1)
    design = np.hstack([levels[known].astype(np.float64), logs[known]])
    coef = np.linalg.lstsq(design, target[known], rcond=None)[0]
    k = levels.shape[1]
    betas = coef[k:]
    pooled = float(np.mean(target - logs @ betas))
    if not regime.group_columns:
        return Baseline(regime.baseline_columns, tuple(map(float, betas)), (), (), float(coef[0]))
    seen = levels[known].sum(axis=0) > 0
    intercepts = tuple(float(c) if s else pooled for c, s in zip(coef[:k], seen))
    return Baseline(regime.baseline_columns, tuple(map(float, betas)), regime.group_columns, intercepts, pooled)


def mask_unseen(x: np.ndarray, contract: FeatureContract, rng: np.random.Generator, keep: str | None = None,
                fraction: float = UNSEEN_MASK_FRACTION) -> np.ndarray:
    """A copy with a seeded share of each unseen="missing" category but `keep` masked (its one-hot block NaN).

    The trees then learn where a level they never saw should go. The group feature is kept: its baseline
    already answers a missing level with the pooled intercept, and masking it would blur the per-level
    corrections the trees learn for every row.
    """
    out = x.copy()
    start = len(contract.numeric)
    for c in contract.categorical:
        width = len(c.levels)
        if c.unseen == "missing" and c.name != keep and fraction > 0:
            out[rng.random(len(out)) < fraction, start:start + width] = np.nan
        start += width
    return out


def booster_params(params: dict, seed: int = SEED) -> dict:
    """XGBoost's parameters for one single-threaded, seeded regression fit."""
    return {"objective": "reg:squarederror", "seed": seed, "nthread": 1,
            **{k: v for k, v in params.items() if k != "num_boost_round"}}


def fit_regime(x: np.ndarray, y: np.ndarray, regime: Regime, params: dict, contract: FeatureContract, *,
               rounds: int | None = None, seed: int = SEED) -> tuple[Baseline, xgb.Booster]:
    """Baseline and booster of a regime on its rows (already in its view), categories masked as in serving."""
    baseline = fit_baseline(x, y, regime)
    masked = mask_unseen(x, contract, np.random.default_rng(seed), keep=regime.group)
    z = np.log(y) - baseline.log_batch(masked)
    booster = xgb.train(booster_params(params, seed), xgb.DMatrix(masked, label=z, nthread=1),
                        num_boost_round=rounds or params["num_boost_round"])
    return baseline, booster


def conformal_q(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) * level)-th smallest score (the largest if n is small)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(int(math.ceil((len(s) + 1) * level)), len(s))
    return float(s[k - 1])


def fit_interval(scores: np.ndarray, x: np.ndarray, regime: Regime, level: float, min_rows: int) -> Interval:
    """Half-widths per group level with at least `min_rows` calibration rows, the pooled one for the others."""
    pooled = conformal_q(scores, level)
    q = []
    for column in regime.group_columns:
        here = x[:, column] == 1.0
        q.append(conformal_q(scores[here], level) if here.sum() >= min_rows else pooled)
    return Interval(level, regime.group_columns, tuple(q), pooled)


@dataclass(frozen=True)
class TrainedRegime:
    """One regime's fitted parts and what it was fitted and calibrated on."""

    regime: Regime
    baseline: Baseline
    booster: xgb.Booster
    interval: Interval
    fitted_rows: int
    calibration_rows: int


def train_regimes(spec: ModelSpec, contract: FeatureContract, x: np.ndarray, y: np.ndarray, *, groups: np.ndarray,
                  params: dict[str, dict]) -> list[TrainedRegime]:
    """Every regime fitted on the training rows less a seeded share of groups, and calibrated on that share."""
    r = spec.regression
    calibration = grouped_mask(groups, r.calibration_fraction, SEED + 1)
    out = []
    for regime in regimes(spec, contract):
        eligible, xv = regime.rows(x), regime.view(x)
        fit_rows, cal_rows = eligible & ~calibration, eligible & calibration
        baseline, booster = fit_regime(xv[fit_rows], y[fit_rows], regime, params[regime.name], contract)
        xc = xv[cal_rows]
        scores = np.abs(np.log(y[cal_rows]) - baseline.log_batch(xc) - booster.inplace_predict(xc))
        interval = fit_interval(scores, xc, regime, spec.target.interval, r.min_level_rows)
        out.append(TrainedRegime(regime, baseline, booster, interval, int(fit_rows.sum()), int(cal_rows.sum())))
    return out


def cv_rmse(x: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray, regime: Regime, params: dict,
            contract: FeatureContract, rounds: list[int]) -> list[float]:
    """Mean squared error (on y) of one fold at each number of rounds, from one fit of the most rounds."""
    eligible, xv = regime.rows(x), regime.view(x)
    fit_rows, test_rows = train & eligible, test & eligible
    baseline, booster = fit_regime(xv[fit_rows], y[fit_rows], regime, params, contract, rounds=max(rounds))
    xt = xv[test_rows]
    log_b = baseline.log_batch(xt)
    return [float(np.mean((np.exp(log_b + booster.inplace_predict(xt, iteration_range=(0, r))) - y[test_rows]) ** 2))
            for r in rounds]


def member_section(trained: TrainedRegime, contract: FeatureContract, model_file: str, trees_file: str) -> dict:
    """A regime's entry in the manifest's `members`."""
    b, q = trained.baseline, trained.interval
    return {"name": trained.regime.name, "model_file": model_file, "trees_file": trees_file,
            "needs": list(trained.regime.need_names),
            "baseline": {"columns": list(b.columns), "betas": list(b.betas), "group_columns": list(b.group_columns),
                         "intercepts": list(b.intercepts), "pooled_intercept": b.pooled_intercept},
            "interval": {"level": q.level, "group_columns": list(q.group_columns), "q": list(q.q),
                         "q_pooled": q.q_pooled},
            "fitted_rows": trained.fitted_rows, "calibration_rows": trained.calibration_rows,
            "baseline_inputs": [contract.columns[c] for c in b.columns]}
