"""Per-feature explanations of a served model's answers, in margin space and in output space.

Margin space: exact TreeSHAP (`RoutedPredictor.contributions`: NumPy over the compiled trees, else XGBoost's),
whose bias column is the trees' expected margin, base_score included. The one-hot columns of a categorical
feature are summed back into that feature, so each row has one attribution per request field of the contract
(`field_names`) and per output, and base value + sum of attributions == the model's margin: the softmax input
of a multi-class classifier, the logit of a binary classifier's P(positive), the log of a log-scale regressor's
answer, an identity-scale regressor's answer itself.

A regressor's margin is its baseline plus trees(x), and its baseline is additive too. On the log scale (log
b(x) = intercept[level] + sum of beta_j * log x_j), beta_j * (log x_j - r_j) goes to the feature of baseline
input j, where r_j is the log of the geometric midpoint of that feature's training range (the contract's
train_min and train_max); on the identity scale (offset intercept[level] + sum of beta_j * x_j), beta_j *
(x_j - r_j) with r_j the arithmetic midpoint. intercept[level] - pooled_intercept goes to the group feature
(nothing for a missing or unseen level, which the baseline answers with the pooled intercept). The constant
rest, pooled_intercept + sum of beta_j * r_j, joins the trees' bias in the base value, which therefore differs
between members (regimes) and is reported per row.

Output space (probabilities of a classifier, the target's unit for a regressor): integrated gradients of the
output along the straight path in margin space m(t) = base + t * sum_j phi_j, phi_j being the margin
attributions of feature j (a vector over the outputs):

    phi_out[c, j] = integral over t in [0, 1] of grad out_c(m(t)) . phi_j

so that an output's attributions sum to out(margin) - out(base), the prediction minus the baseline
prediction. With one margin the integral has a closed form, phi_j * (out(m) - out(base)) / (m - base): for a
log-scale regressor (out = exp m), a binary classifier (out = sigmoid m, P(positive): the positive class is
the one explained, outputIndex 1 of its two probabilities) and an identity-scale regressor (out = m, so the
output attributions are the margin ones). For a multi-class classifier (softmax, d p_c / d m_k = p_c *
(delta_ck - p_k)) it is taken by Gauss-Legendre quadrature; the little the quadrature misses is its
approximation error (relative to the sum of the attributions' magnitudes), removed by rescaling the output's
attributions by the factor, all but 1, that makes their sum exact. Where they largely cancel out (their sum
under half their magnitudes), rescaling would move them by more than twice the gap, and by a ratio of rounding
noise when a probability ends where it started, so the gap is spread over them in proportion to their
magnitudes instead, which also makes the sum exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.polynomial.legendre import leggauss

from shared.contract import FeatureContract
from shared.predictor import Baseline, RegressionPredictor, sigmoid, softmax

if TYPE_CHECKING:
    from shared.model import ServingModel
    from shared.validation import FeatureBatch

QUADRATURE_POINTS = 32
_NODES, _WEIGHTS = leggauss(QUADRATURE_POINTS)
_T = (_NODES + 1.0) / 2.0  # from [-1, 1] to [0, 1]
_W = _WEIGHTS / 2.0


@dataclass(frozen=True, eq=False)
class Explanation:
    """Attributions of a batch's outputs to its features: arrays indexed [row, output] or [row, output, feature].

    `base_margin + margin_attributions.sum(-1) == margin` and `baseline_output + output_attributions.sum(-1)
    == output` (see the module docstring for the methods). Arrays are read-only.
    """

    features: tuple[str, ...]  # the contract's field_names
    outputs: tuple[str, ...]  # class labels, or the target's name
    target: str
    output_space: str  # "probability" or "value"
    regimes: tuple[str, ...]  # a regressor's member serving each row; empty for a classifier
    base_margin: np.ndarray
    margin_attributions: np.ndarray
    margin: np.ndarray
    baseline_output: np.ndarray
    output_attributions: np.ndarray
    output: np.ndarray
    approximation_error: np.ndarray  # the output-space method's, before the exact correction (0 when exact)
    output_index: tuple[int, ...] = ()  # each output's index among a classifier's probabilities (default: its own)

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    def __len__(self) -> int:
        return self.margin.shape[0]

    def to_vertex(self, digits: int = 6) -> list[dict]:
        """Each row as Vertex AI's Explanation message, values rounded to `digits` significant digits.

        One Attribution per output in output space (outputIndex only for a classifier's classes: Vertex leaves
        it out for a scalar output), with the margin-space values under "margin".
        """
        arrays = (self.baseline_output, self.output, self.output_attributions, self.approximation_error,
                  self.base_margin, self.margin, self.margin_attributions)
        n = len(self)
        if not n:
            return []
        flat = _significant(np.concatenate([a.reshape(n, -1) for a in arrays], axis=1), digits)  # one pass
        ends = np.cumsum([a[0].size for a in arrays])[:-1]
        rounded = [part.reshape(a.shape).tolist() for part, a in zip(np.split(flat, ends, axis=1), arrays)]
        features, classifier = self.features, self.output_space == "probability"
        index = self.output_index or tuple(range(len(self.outputs)))
        explanations = []
        for base, out, attributions, error, base_m, out_m, attributions_m in zip(*rounded):
            items = []
            for c, name in enumerate(self.outputs):
                item = {"baselineOutputValue": base[c], "instanceOutputValue": out[c],
                        "featureAttributions": dict(zip(features, attributions[c]))}
                if classifier:
                    item["outputIndex"] = [index[c]]
                item.update(outputDisplayName=name, outputName=self.target, approximationError=error[c],
                            margin={"baseValue": base_m[c], "outputValue": out_m[c],
                                    "featureAttributions": dict(zip(features, attributions_m[c]))})
                items.append(item)
            explanations.append({"attributions": items})
        return explanations


def explain(model: ServingModel, batch: FeatureBatch) -> Explanation:
    """Attribute every output of every row of a validated batch to the contract's features (module docstring)."""
    contract = model.contract
    x = batch.matrix.reshape(-1, len(contract.columns))  # an empty batch's matrix has no columns
    predictor = model.predictor
    output_index: tuple[int, ...] = ()
    if isinstance(predictor, RegressionPredictor):
        base, phi, regimes, log_scale = _regressor_margins(predictor, contract, x)
        margin = base + phi.sum(axis=2)
        if log_scale.all():  # every row's member on the log scale: its output is exp(margin)
            baseline_output, output = np.exp(base), np.exp(margin)
            output_phi = phi * _exp_secant(base, margin)[..., None]
        else:  # an identity-scale member's output is its margin (slope 1)
            baseline_output, output, secant = base.copy(), margin.copy(), np.ones_like(base)
            baseline_output[log_scale], output[log_scale] = np.exp(base[log_scale]), np.exp(margin[log_scale])
            secant[log_scale] = _exp_secant(base[log_scale], margin[log_scale])
            output_phi = phi * secant[..., None]
        error = np.zeros_like(base)
        outputs, space = (contract.target.name,), "value"
    else:
        binary = contract.target.task == "binary"
        if len(x):
            contribs = predictor.contributions(x)
        else:
            contribs = np.zeros((0, 1 if binary else len(contract.labels), x.shape[1] + 1))
        base, phi, regimes = contribs[..., -1], contribs[..., :-1] @ _layout(contract)[0], ()
        margin = base + phi.sum(axis=2)
        if binary:  # one margin, the positive class's logit: explained as P(positive), the last label
            baseline_output, output = sigmoid(base), sigmoid(margin)
            output_phi = phi * _sigmoid_secant(base, margin)[..., None]
            error = np.zeros_like(base)
            outputs, output_index = (contract.labels[-1],), (len(contract.labels) - 1,)
        else:
            baseline_output, output = softmax(base, axis=-1), softmax(margin, axis=-1)
            output_phi, error = _softmax_path_attributions(base, phi, output - baseline_output)
            outputs = tuple(contract.labels)
        space = "probability"
    return Explanation(tuple(contract.field_names), outputs, contract.target.name, space, regimes, base, phi, margin,
                       baseline_output, output_phi, output, error, output_index)


@lru_cache(maxsize=16)
def _layout(contract: FeatureContract) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (columns, features) 0/1 matrix summing columns into features, and per numeric feature the log of its
    training range's geometric midpoint and its arithmetic midpoint."""
    n_numeric = len(contract.numeric)
    feature_of = list(range(n_numeric))
    for i, feature in enumerate(contract.categorical):
        feature_of += [n_numeric + i] * len(feature.levels)
    to_features = np.zeros((len(feature_of), n_numeric + len(contract.categorical)))
    to_features[np.arange(len(feature_of)), feature_of] = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        midpoints = np.array([(np.log(f.train_min) + np.log(f.train_max)) / 2.0 for f in contract.numeric])
    centres = np.array([(f.train_min + f.train_max) / 2.0 for f in contract.numeric])
    for array in (to_features, midpoints, centres):
        array.setflags(write=False)
    return to_features, midpoints, centres


def _regressor_margins(predictor: RegressionPredictor, contract: FeatureContract,
                       x: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]:
    """Per row: base margin (rows, 1), margin attributions (rows, 1, features), the member that served it, and
    whether that member's scale is log (else identity)."""
    to_features = _layout(contract)[0]
    members = predictor.members
    chosen = np.full(x.shape[0], len(members) - 1)
    for i in reversed(range(len(members) - 1)):  # as RegressionPredictor routes: the first member it can serve
        chosen[~np.isnan(x[:, list(members[i].needs)]).any(axis=1)] = i
    base = np.empty((x.shape[0], 1))
    phi = np.empty((x.shape[0], 1, to_features.shape[1]))
    for i, member in enumerate(members):
        rows = np.flatnonzero(chosen == i)
        if rows.size:
            xi = x[rows]
            contribs = member.predictor.contributions(xi)
            terms, constant = _baseline_terms(member.baseline, contract, xi)
            base[rows] = contribs[:, :, -1] + constant
            phi[rows] = contribs[:, :, :-1] @ to_features + terms[:, None, :]
    names = np.asarray([m.name for m in members], dtype=object)
    log_scale = np.array([m.scale == "log" for m in members], dtype=bool)[chosen]
    return base, phi, tuple(names[chosen].tolist()), log_scale


def _baseline_terms(baseline: Baseline, contract: FeatureContract, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The baseline (log b(x), or the identity scale's offset) as per-feature terms (rows, features) plus a
    constant (module docstring)."""
    to_features, midpoints, centres = _layout(contract)
    log = baseline.scale == "log"
    terms = np.zeros((x.shape[0], to_features.shape[1]))
    constant = baseline.pooled_intercept
    for column, beta in zip(baseline.columns, baseline.betas):
        if column >= len(midpoints) or (log and not np.isfinite(midpoints[column])):
            raise ValueError(f"baseline input {contract.columns[column]} is not a positive numeric feature")
        reference = float(midpoints[column] if log else centres[column])
        value = x[:, column].astype(np.float64)
        terms[:, column] += beta * ((np.log(value) if log else value) - reference)  # numeric: column == feature
        constant += beta * reference
    if baseline.group_columns:
        block = x[:, list(baseline.group_columns)] == 1.0  # NaN (missing or unseen) matches no level
        intercepts = np.asarray(baseline.intercepts, dtype=np.float64)[block.argmax(axis=1)]
        level = np.where(block.any(axis=1), intercepts, baseline.pooled_intercept)
        terms[:, int(to_features[baseline.group_columns[0]].argmax())] += level - baseline.pooled_intercept
    return terms, constant


def _exp_secant(base: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """(exp(margin) - exp(base)) / (margin - base), exp(base) where they are equal."""
    d = margin - base
    same = d == 0.0
    return np.exp(base) * np.where(same, 1.0, np.expm1(d) / np.where(same, 1.0, d))


def _sigmoid_secant(base: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """(sigmoid(margin) - sigmoid(base)) / (margin - base), the sigmoid's slope where they are equal."""
    d = margin - base
    same = d == 0.0
    s_base = sigmoid(base)
    slope = s_base * (1.0 - s_base)
    return np.where(same, slope, (sigmoid(margin) - s_base) / np.where(same, 1.0, d))


def _softmax_path_attributions(base: np.ndarray, phi: np.ndarray,
                               exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integrated gradients of softmax along base + t * sum_j phi_j: (rows, classes, features), and the error.

    With p(t) the probabilities along the path, phi_out[c, j] = sum over nodes of w * p_c * (phi[c, j] -
    sum_k p_k * phi[k, j]): the first term needs the weighted p_c, the second the weighted p_c * p_k.
    """
    delta = phi.sum(axis=2)
    # (rows, classes, nodes): NumPy reduces over a short middle axis far faster than over a short last one
    p = softmax(base[:, :, None] + delta[:, :, None] * _T, axis=1)
    weighted = p * _W
    attributions = weighted.sum(axis=2)[..., None] * phi - (weighted @ p.transpose(0, 2, 1)) @ phi
    total = attributions.sum(axis=2)
    magnitude = np.abs(attributions).sum(axis=2)
    gap = exact - total
    per_magnitude = gap / np.where(magnitude > 0.0, magnitude, 1.0)
    error = np.abs(per_magnitude)
    # rescaling moves the attributions by |gap| * magnitude / |total| in all: no more than twice the gap unless
    # they cancel out, when spreading the gap by magnitude moves them by the gap alone
    rescale = (2.0 * np.abs(total) >= magnitude) & (magnitude > 0.0)
    factor = np.where(rescale, exact / np.where(rescale, total, 1.0), 1.0)
    share = np.where(rescale, 0.0, per_magnitude)
    attributions = attributions * factor[..., None] + share[..., None] * np.abs(attributions)
    return attributions, error


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Values rounded to `digits` significant digits, dividing by exact powers of ten so that they print short."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        decimals = digits - 1 - np.floor(np.log10(np.abs(a)))
    keep = ~(np.abs(decimals) <= 300)  # zero, inf, NaN, and what a power of ten cannot scale
    decimals[keep] = 0.0
    scale = 10.0 ** np.abs(decimals)
    rounded = np.where(decimals >= 0.0, np.round(a * scale) / scale, np.round(a / scale) * scale)
    rounded[keep] = a[keep]
    return rounded
