"""A regressor from its spec: one booster per input regime, over an offset or a log-scale baseline, with
cross-conformal intervals.

Each regime (`[[regression.regimes]]`; a plain regressor without any has one, "all") serves the rows having
every input it `needs`; the last needs nothing and serves the rest. A regime answers from its needed inputs
and the required features only: every other optional numeric feature is masked (NaN) in its training, so it
never learns to lean on an input a request may leave out. The spec's strategy says what its booster learns:

- `plain`: the target as it is, any sign: z = y - mean(y), the value is mean(y) + margin and the interval
  value -/+ q.
- `log_baseline`: z = log y - log b(x) over a baseline fitted by least squares on the log scale,

      log b(x) = intercept[level of the group feature] + sum_j beta_j * log x_j   (its `baseline` inputs),

  with a pooled intercept for a missing or unseen level. A prediction b(x) * exp(margin) follows its inputs
  beyond the largest target seen in training instead of stopping there as trees alone do; the interval is
  b(x) * exp(margin -/+ q).

Intervals are cross-conformal (CV+ style): every training row's residual |z - margin| comes from a model
fitted without its fold (the search's folds of whole groups), and the half-width q is the
ceil((n + 1) * level) / n quantile of those residuals, per level of the group feature that has enough rows,
else pooled. Then the served booster and baseline are fitted on every training row: nothing is held back
from the model to calibrate it, and since each residual came from a model fitted on four fifths of the
rows, the served model's errors are if anything smaller (the gate measures coverage on the holdout).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from retrain_job.train.split import SEED, group_folds
from shared.contract import FeatureContract
from shared.predictor import Baseline, Interval
from shared.spec import ModelSpec

UNSEEN_MASK_FRACTION = 0.1  # categories masked in training, so that a level never seen serves as missing
CONFORMAL_FOLDS = 10  # folds of whole groups whose out-of-fold residuals calibrate the intervals (models on 90%)


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
    log_scale: bool = True  # the log_baseline strategy; False: plain (the target as it is)

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
                        tuple(columns.index(n) for n in r.baseline), group_columns, r.needs, group,
                        spec.regression.log_scale)
                 for r in spec.regression.regimes)


def fit_baseline(x: np.ndarray, y: np.ndarray, regime: Regime) -> Baseline:
    """A plain regime's offset (the mean target), or least squares of log y on one intercept per group level and
    the logs of the baseline inputs."""
    if not regime.log_scale:
        return Baseline((), (), (), (), float(np.mean(y)), "identity")
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


def learned(y: np.ndarray, offset: np.ndarray, regime: Regime) -> np.ndarray:
    """What a regime's booster learns: log(y / b(x)), or y minus the offset."""
    return np.log(y) - offset if regime.log_scale else y - offset


def estimate(offset: np.ndarray, margin: np.ndarray, regime: Regime) -> np.ndarray:
    """A regime's answers from its offset (log b(x), or the mean) and the booster's margin."""
    return np.exp(offset + margin) if regime.log_scale else offset + margin


def fit_regime(x: np.ndarray, y: np.ndarray, regime: Regime, params: dict, contract: FeatureContract, *,
               rounds: int | None = None, seed: int = SEED) -> tuple[Baseline, xgb.Booster]:
    """Baseline and booster of a regime on its rows (already in its view), categories masked as in serving."""
    baseline = fit_baseline(x, y, regime)
    masked = mask_unseen(x, contract, np.random.default_rng(seed), keep=regime.group)
    z = learned(y, baseline.batch(masked), regime)
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


def _fold_residuals(x: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray, regime: Regime,
                    params: dict, contract: FeatureContract) -> np.ndarray:
    """|z - margin| of the test rows from a regime fitted on the train rows (rows already in its view)."""
    baseline, booster = fit_regime(x[train], y[train], regime, params, contract)
    xt = x[test]
    return np.abs(learned(y[test], baseline.batch(xt), regime) - booster.inplace_predict(xt))


def train_regimes(spec: ModelSpec, contract: FeatureContract, x: np.ndarray, y: np.ndarray, *, groups: np.ndarray,
                  params: dict[str, dict],
                  parallel=lambda fn, calls: [fn(**c) for c in calls]) -> list[TrainedRegime]:
    """Every regime calibrated by cross-conformal residuals over folds of whole groups, then fitted on all of
    its training rows (`parallel` runs the fold fits, as the search's)."""
    r = spec.regression
    folds = group_folds(groups, CONFORMAL_FOLDS, SEED)
    out = []
    for regime in regimes(spec, contract):
        eligible, xv = regime.rows(x), regime.view(x)
        xe, ye = xv[eligible], y[eligible]
        tests = [fold[eligible] for fold in folds]
        calls = [{"x": xe, "y": ye, "train": ~test, "test": test, "regime": regime, "params": params[regime.name],
                  "contract": contract} for test in tests if test.any() and (~test).any()]
        residuals = np.empty(len(ye))
        for call, res in zip(calls, parallel(_fold_residuals, calls)):
            residuals[call["test"]] = res
        covered = np.zeros(len(ye), dtype=bool)
        for call in calls:
            covered |= call["test"]
        interval = fit_interval(residuals[covered], xe[covered], regime, spec.target.interval, r.min_level_rows)
        baseline, booster = fit_regime(xe, ye, regime, params[regime.name], contract)
        out.append(TrainedRegime(regime, baseline, booster, interval, int(len(ye)), int(covered.sum())))
    return out


def cv_rmse(x: np.ndarray, y: np.ndarray, *, train: np.ndarray, test: np.ndarray, regime: Regime, params: dict,
            contract: FeatureContract, rounds: list[int]) -> list[float]:
    """Mean squared error (on y) of one fold at each number of rounds, from one fit of the most rounds."""
    eligible, xv = regime.rows(x), regime.view(x)
    fit_rows, test_rows = train & eligible, test & eligible
    baseline, booster = fit_regime(xv[fit_rows], y[fit_rows], regime, params, contract, rounds=max(rounds))
    xt = xv[test_rows]
    offset = baseline.batch(xt)
    return [float(np.mean((estimate(offset, booster.inplace_predict(xt, iteration_range=(0, r)), regime)
                           - y[test_rows]) ** 2)) for r in rounds]


def member_section(trained: TrainedRegime, contract: FeatureContract, model_file: str, trees_file: str) -> dict:
    """A regime's entry in the manifest's `members`."""
    b, q = trained.baseline, trained.interval
    return {"name": trained.regime.name, "model_file": model_file, "trees_file": trees_file,
            "needs": list(trained.regime.need_names), "scale": "log" if trained.regime.log_scale else "identity",
            "baseline": {"columns": list(b.columns), "betas": list(b.betas), "group_columns": list(b.group_columns),
                         "intercepts": list(b.intercepts), "pooled_intercept": b.pooled_intercept},
            "interval": {"level": q.level, "group_columns": list(q.group_columns), "q": list(q.q),
                         "q_pooled": q.q_pooled},
            "fitted_rows": trained.fitted_rows, "calibration_rows": trained.calibration_rows,
            "baseline_inputs": [contract.columns[c] for c in b.columns]}
