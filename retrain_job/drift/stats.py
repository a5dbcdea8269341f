"""Data drift as small composable calculations (after Evidently's defaults).

Numeric features: the two-sample Kolmogorov-Smirnov test on small references (<= 1,000 rows), the
Wasserstein distance normed by the reference's standard deviation on larger ones. Categorical features:
chi-square on small references, Jensen-Shannon distance on larger ones. PSI is reported alongside.
A feature drifts when its test's p-value falls below 0.05 or its distance exceeds 0.1; the data set
drifts when the share of drifted features reaches `share_threshold`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

SMALL_REFERENCE = 1000
P_VALUE = 0.05
DISTANCE = 0.1
EPS = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """Every threshold of the report, recorded in it."""

    p_value: float = P_VALUE
    distance: float = DISTANCE
    share: float = 0.5
    min_rows: int = 30
    psi_warning: float = 0.2


@dataclass
class FeatureDrift:
    """One feature's verdict with the numbers behind it and the histograms to draw."""

    feature: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    drifted: bool
    psi: float
    reference_rows: int
    current_rows: int
    histogram: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The feature's entry in the report."""
        return asdict(self)


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance in units of the reference's standard deviation."""
    scale = float(np.std(reference)) or 1.0
    return float(stats.wasserstein_distance(reference, current)) / scale


def proportions(values: list, categories: list) -> np.ndarray:
    """Share of each category, with a floor so that unseen categories stay comparable."""
    counts = _counts(values, categories)
    shares = counts / max(counts.sum(), 1.0)
    shares = np.maximum(shares, EPS)
    return shares / shares.sum()


def _counts(values: list, categories: list) -> np.ndarray:
    """How many values equal each category (one pass over the values)."""
    seen = Counter(values)
    return np.array([seen[c] for c in categories], dtype=float)


def chi_square(reference: list, current: list, categories: list) -> tuple[float, float]:
    """Chi-square goodness of fit of the current counts to the reference's proportions."""
    observed = _counts(current, categories)
    expected = proportions(reference, categories) * observed.sum()
    result = stats.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)


def jensen_shannon(reference: list, current: list, categories: list) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between category distributions."""
    return float(jensenshannon(proportions(reference, categories), proportions(current, categories), base=2))


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index between two binned distributions (shares floored at EPS)."""
    r = np.maximum(reference_shares, EPS)
    c = np.maximum(current_shares, EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_drift(name: str, reference: np.ndarray, current: np.ndarray, t: DriftThresholds,
                  bins: int = 12) -> FeatureDrift:
    """KS (small reference) or normed Wasserstein (large reference), plus PSI and histograms."""
    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=bins)
    ref_hist = np.histogram(reference, edges)[0] / max(len(reference), 1)
    cur_hist = np.histogram(current, edges)[0] / max(len(current), 1)
    if len(reference) <= SMALL_REFERENCE:
        stat, p = ks(reference, current)
        method, drifted = "ks", p < t.p_value
    else:
        stat, p = wasserstein_normed(reference, current), None
        method, drifted = "wasserstein_normed", stat > t.distance
    return FeatureDrift(name, "numeric", method, round(stat, 6), None if p is None else round(p, 6), bool(drifted),
                        round(psi(ref_hist, cur_hist), 6), int(len(reference)), int(len(current)),
                        {"edges": np.round(edges, 3).tolist(), "reference": np.round(ref_hist, 4).tolist(),
                         "current": np.round(cur_hist, 4).tolist()})


def categorical_drift(name: str, reference: list, current: list, t: DriftThresholds) -> FeatureDrift:
    """Chi-square (small reference) or Jensen-Shannon (large reference), plus PSI and bar shares."""
    categories = sorted({str(v) for v in reference} | {str(v) for v in current})
    reference = [str(v) for v in reference]
    current = [str(v) for v in current]
    ref_p, cur_p = proportions(reference, categories), proportions(current, categories)
    if len(reference) <= SMALL_REFERENCE:
        stat, p = chi_square(reference, current, categories)
        method, drifted = "chi_square", p < t.p_value
    else:
        stat, p = jensen_shannon(reference, current, categories), None
        method, drifted = "jensen_shannon", stat > t.distance
    return FeatureDrift(name, "categorical", method, round(stat, 6), None if p is None else round(p, 6),
                        bool(drifted), round(psi(ref_p, cur_p), 6), len(reference), len(current),
                        {"categories": categories, "reference": np.round(ref_p, 4).tolist(),
                         "current": np.round(cur_p, 4).tolist()})


def share_drifted(features: list[FeatureDrift]) -> float:
    """Fraction of features whose test says drift."""
    return round(sum(f.drifted for f in features) / len(features), 4) if features else 0.0
