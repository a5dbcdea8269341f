"""Live quality per segment: the monitor's figures restricted to each of the most served values of a segment field.

The same calculation as for the whole traffic (`retrain_job.monitor.quality.monitor`) on the joined rows whose
instance has the value, beside that value's prediction sums (CBPE); the same minimum of labels before a verdict.
Only the `SEGMENT_VALUES` most served values are reported, so a metric's `segment` label stays bounded.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from retrain_job.data.feedback import Joined, PredictionStats
from retrain_job.monitor.quality import monitor
from retrain_job.report import SEGMENT_VALUES


def segment_label(field: str, value: str) -> str:
    """A segment as one metric label value: `field=value`."""
    return f"{field}={value}"


def segment_quality(joined: Joined, field: str, stats: Mapping[str | None, tuple[PredictionStats, ...]],
                    **judging: object) -> list[dict]:
    """Per most served value of `field`: each (version, role)'s quality on its rows (`monitor`'s arguments)."""
    served = Counter({value: sum(s.predictions for s in per) for value, per in stats.items() if value is not None})
    out = []
    for value, predictions in served.most_common(SEGMENT_VALUES):
        rows = tuple(r for r in joined.rows if _text(r.instance.get(field)) == value)
        labelled = Counter((r.model_version, r.role) for r in rows)
        part = replace(joined, rows=rows, predictions=stats[value], labelled=dict(labelled), totals={})
        report = monitor(part, **judging)
        out.append({"field": field, "value": value, "segment": segment_label(field, value),
                    "predictions": predictions, "labels": len(rows),
                    "versions": [v.to_dict() for v in report.versions]})
    return out


def _text(value: object) -> str | None:
    return None if value is None else str(value)
