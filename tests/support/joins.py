"""The engine's feedback join on real sink files, held on every call to the Python join it replaced (the oracle)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from retrain_job.data.engine import DuckDBEngine
from retrain_job.data.feedback import Joined
from retrain_job.data.logs import join_feedback
from shared.store import LocalStore
from tests.support import reference_join


def engine_join(store: LocalStore, model: str, now: datetime, prefix: str = "logs", *, feedback_hours: float = 24,
                prediction_days: float = 7, fields: tuple[str, ...] | None = None, sample_rows: int = 100_000,
                check: bool = True) -> Joined:
    """The DuckDB engine's join over the store's sink files; with `check`, first asserted equal to the oracle's."""
    feedback_from = now - timedelta(hours=feedback_hours)
    old = reference_join.join_feedback(store, model, now, prefix, feedback_hours=feedback_hours,
                                       prediction_days=prediction_days)
    names = fields if fields is not None else tuple(sorted({k for r in old.rows for k in r.instance}))
    engine = DuckDBEngine.for_store(store, prefix, feedback_from - timedelta(days=prediction_days), now)
    try:
        new = join_feedback(engine, model, feedback_from, fields=names, sample_rows=sample_rows)
    finally:
        engine.close()
    if check:
        assert_same_join(new, old, names)
    return new


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_same_join(new: Joined, old: reference_join.Joined, fields: tuple[str, ...]) -> None:
    """The figures the monitor reports agree: counts, window, joined rows in order, per-version predictions."""
    assert new.counts.to_dict() == old.counts.to_dict()
    assert new.window.to_dict() == old.window.to_dict()
    assert [(r.id, r.model_version, r.role, r.predicted, r.truth, r.source, r.feedback_time, r.prediction_time,
             r.labels, r.probabilities, r.interval, r.instance) for r in new.rows] == [
        (r.id, r.model_version, r.role, r.predicted, r.truth, r.source, r.feedback_time, r.prediction_time,
         r.labels, r.probabilities, r.interval, {k: v for k, v in r.instance.items() if k in fields})
        for r in old.rows]
    groups: dict[tuple[str, str], list] = {}
    for p in old.predictions:
        groups.setdefault((p.model_version, p.role), []).append(p)
    assert {(s.model_version, s.role) for s in new.predictions} == set(groups)
    for s in new.predictions:
        predictions = groups[(s.model_version, s.role)]
        confidences = [p.predicted_probability for p in predictions if p.predicted_probability is not None]
        assert s.predictions == len(predictions)
        assert s.with_probability == len(confidences)
        assert _close(s.confidence_sum, sum(confidences))
        assert _close(s.confidence_spread, sum(c * (1 - c) for c in confidences))
        assert s.classifier == any(p.is_classifier for p in predictions)
