"""The queries over the serving logs: feedback joined to its predictions, and samples of served rows.

Each query is one BigQuery-dialect text over `lines` and `logged` (`retrain_job.data.engine`), run by DuckDB
locally and BigQuery in the cloud. What comes back is counts, sums and bounded samples: the joined rows (at most
`sample_rows` per version and role, picked by a hash of their id), never every logged row.

The join's rules: the last truth sent for an id wins (by timestamp, then insertId, by which Cloud Logging
orders entries of one timestamp, then position in its entry); an item for an id this model never predicted in
the window is dropped; a prediction logged twice under one id keeps its first line; a prediction line stamped
after its feedback still joins (late). Every feedback item lands in exactly one count:
items == malformed + unknown_ids + invalid_truths + duplicates + joined. A truth of null is no truth (malformed).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import orjson

from retrain_job.data.engine import LogEngine
from retrain_job.data.feedback import (
    UNKNOWN,
    FeedbackCounts,
    Joined,
    JoinedRow,
    JoinedTotals,
    PredictionStats,
    ShadowPairs,
    Window,
    canonical_truth,
)
from shared.logline import SHADOW_ROLE

SAMPLE_ROWS = 20_000  # joined rows per (version, role) brought into Python; beyond it a hashed sample
# the rows of answers given: a shadow's rows (under the same ids) answered no one
ANSWERED = f"COALESCE(role, '') <> '{SHADOW_ROLE}'"


def json_path(name: str) -> str:
    """A JSONPath member step for a field name, quoted so spaces and dots are literal ('$.instance."a b"'); a spec
    refuses names with quotes or backslashes."""
    return f'"{name}"'


# the model's feedback items in the window, each judged well-formed or not (parsed once: feedback is small)
ITEMS = """
SELECT ts, insert_id, COALESCE(NULLIF(source, ''), 'unknown') AS source, k, row_key, id, truth,
       STARTS_WITH(id_json, '"') AND truth IS NOT NULL AS valid
FROM logged WHERE event = 'feedback' AND model = @model AND ts > @feedback_from"""

# every prediction row of the model in the window, compact (with its segment values); the heavy columns only for
# ids fed back and for a hashed sample of about 2 x @served_rows rows (`served`)
def predictions_sql(segments: Sequence[str] = (), every: bool = True) -> str:
    """The `predictions` relation: one compact row per logged prediction of @model (not `every`: only those of the
    ids fed back)."""
    values = "".join(f", JSON_VALUE(p.instance, '$.{json_path(name)}') AS segment_{i}"
                     for i, name in enumerate(segments))
    return f"""
SELECT p.ts, p.insert_id, p.k, p.row_key, COALESCE(p.model_version, 'unknown') AS model_version,
       COALESCE(p.role, 'unknown') AS role, p.labels, p.id, p.probability,
       STARTS_WITH(p.predicted, '"') AS classifier, w.id IS NOT NULL AS wanted, p.sampled{values},
       IF(w.id IS NULL AND NOT p.sampled, NULL, p.predicted) AS predicted,
       IF(w.id IS NULL, NULL, p.probabilities) AS probabilities,
       IF(w.id IS NULL AND NOT p.sampled, NULL, p.instance) AS instance, p.interval_low, p.interval_high
FROM (SELECT *, MOD(ABS(FARM_FINGERPRINT(id)), 1000000) < @sample_ppm AS sampled FROM logged
      WHERE event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED}) AS p
{"LEFT " if every else ""}JOIN (SELECT DISTINCT id FROM items WHERE valid) AS w ON p.id = w.id"""


PREDICTIONS = predictions_sql()

# feedback items judged against the first line of their prediction (materialised once per join as `checked`); a
# relation is ordered by its narrow columns alone, its chosen rows then found again by `row_key` (a row's own key
# in `logged`): sorting the wide rows themselves is what costs. The prediction's heavy columns (instance,
# probabilities) stay in `predictions` until the sample is read (`prediction_key`)
CHECKED = """
WITH firsts AS (
  SELECT row_key FROM predictions WHERE wanted
  QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts, insert_id, k) = 1),
matched AS (
  SELECT p.id, p.row_key, p.ts, p.model_version, p.role, p.labels, p.classifier, p.predicted, p.interval_low,
         p.interval_high
  FROM predictions AS p JOIN firsts AS f ON p.row_key = f.row_key),
judged AS (
  SELECT v.ts, v.insert_id, v.source, v.k, v.row_key, v.id, v.truth, m.id IS NOT NULL AS known,
         m.row_key AS prediction_key, m.ts AS prediction_ts, m.model_version, m.role, m.labels, m.classifier,
         m.predicted, m.interval_low, m.interval_high, JSON_VALUE(v.truth, '$') AS truth_text,
         SAFE_CAST(JSON_VALUE(v.truth, '$') AS FLOAT64) AS truth_number
  FROM items AS v LEFT JOIN matched AS m ON v.id = m.id WHERE v.valid)
SELECT *, CASE
  WHEN NOT known THEN FALSE
  WHEN classifier THEN STARTS_WITH(truth, '"') AND TRIM(truth_text) <> ''
       AND (labels IS NULL OR STRPOS(LOWER(labels), CONCAT('"', LOWER(TRIM(truth_text)), '"')) > 0)
  ELSE truth_number IS NOT NULL AND NOT IS_NAN(truth_number) AND NOT IS_INF(truth_number)
       AND truth NOT IN ('true', 'false') END AS ok
FROM judged"""

# the winners: one per fed-back id, its last good truth (materialised as `winners`)
WINNERS = """
WITH lasts AS (
  SELECT row_key FROM checked WHERE ok
  QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, insert_id DESC, k DESC) = 1)
SELECT c.* FROM checked AS c JOIN lasts AS l ON c.row_key = l.row_key"""

# the window's line counts (lines by their insertId: a line without rows is not counted)
LINE_COUNTS = f"""
SELECT COUNT(DISTINCT IF(event = 'feedback' AND ts > @feedback_from AND model = @model, insert_id, NULL))
         AS feedback_lines,
       COUNT(DISTINCT IF(event = 'feedback' AND ts > @feedback_from AND (model IS NULL OR model <> @model),
                         insert_id, NULL)) AS other_lines,
       COUNT(DISTINCT IF(event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED}, insert_id,
                         NULL)) AS prediction_lines,
       COUNT(IF(event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED}, id, NULL))
         - COUNT(DISTINCT IF(event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED}, id, NULL))
         AS repeated
FROM logged"""

COUNTS = """
SELECT (SELECT feedback_lines FROM line_counts), (SELECT COUNT(*) FROM items),
       (SELECT COUNTIF(valid) FROM items), (SELECT COUNTIF(NOT known) FROM checked),
       (SELECT COUNTIF(known AND NOT ok) FROM checked), (SELECT COUNTIF(ok) FROM checked),
       (SELECT COUNT(*) FROM winners), (SELECT COUNTIF(prediction_ts > ts) FROM winners),
       (SELECT other_lines FROM line_counts), (SELECT prediction_lines FROM line_counts),
       (SELECT repeated FROM line_counts)"""

# per (version, role): the joined rows, and the sums behind accuracy, RMSE, MAE and coverage over all of them
JOINED_BY_VERSION = """
WITH scored AS (
  SELECT model_version, role, classifier, interval_low, interval_high, truth_number,
         LOWER(TRIM(JSON_VALUE(truth, '$'))) = LOWER(JSON_VALUE(predicted, '$')) AS hit,
         SAFE_CAST(JSON_VALUE(predicted, '$') AS FLOAT64) - truth_number AS error
  FROM winners)
SELECT model_version, role, COUNT(*) AS n, COUNTIF(classifier AND hit) AS hits,
       COUNTIF(NOT classifier AND error IS NOT NULL) AS scored, SUM(IF(classifier, NULL, error * error)) AS squares,
       SUM(IF(classifier, NULL, ABS(error))) AS absolutes,
       COUNTIF(NOT classifier AND interval_low IS NOT NULL AND interval_high IS NOT NULL) AS with_interval,
       COUNTIF(NOT classifier AND truth_number BETWEEN interval_low AND interval_high) AS inside
FROM scored GROUP BY model_version, role"""

BY_SOURCE = "SELECT source, COUNT(*) FROM items WHERE valid GROUP BY source ORDER BY source"

PREDICTION_STATS = """
SELECT model_version, role, COUNT(*) - (COUNT(id) - COUNT(DISTINCT id)), COUNT(probability), SUM(probability),
       SUM(probability * (1 - probability)), LOGICAL_OR(classifier), MAX(labels)
FROM predictions GROUP BY model_version, role"""


def joined_sample_sql(outputs: bool = True, limited: bool = True) -> str:
    """The winners (one row per fed-back id), in feedback order, with their instance; `limited`: at most
    @sample_rows per (version, role), by hash of id; without `outputs`, no times, probabilities or intervals (a
    retrain learns from the inputs and the truth)."""
    answers = ("w.ts, w.prediction_ts, w.labels, p.probabilities, w.interval_low, w.interval_high" if outputs
               else "NULL, NULL, w.labels, NULL, NULL, NULL")
    picked = ("SELECT * FROM winners WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY model_version, role "
              "ORDER BY FARM_FINGERPRINT(id)) <= @sample_rows") if limited else "SELECT * FROM winners"
    return f"""WITH picked AS ({picked})
SELECT w.id, w.model_version, w.role, w.predicted, w.truth, w.source, {answers}, p.instance
FROM picked AS w JOIN predictions AS p ON p.row_key = w.prediction_key ORDER BY w.ts, w.insert_id, w.k"""


SERVED = f"event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED} AND ts >= @served_from"
SERVED_COUNTS = f"SELECT COUNT(*) AS served_rows FROM logged WHERE {SERVED}"


def served_sample_sql(rows: int) -> str:
    """At most `rows` served rows of the model (the ones whose id hashes lowest): their answer and instance."""
    return f"""SELECT predicted, instance FROM logged WHERE {SERVED}
ORDER BY FARM_FINGERPRINT(id), id LIMIT {int(rows)}"""


@dataclass(frozen=True)
class Served:
    """A bounded sample of one model's served rows in a window, and how many rows there were in all."""

    rows: list[dict]  # the fields asked for, plus `predicted`
    total: int
    window: dict


def served_sample(engine: LogEngine, model: str, fields: Sequence[str], rows: int = SAMPLE_ROWS,
                  since: datetime | None = None) -> Served:
    """The model's served rows of the engine's window (from `since`, when later than its start): at most `rows` of
    them, picked by a hash of their id."""
    since = engine.since if since is None else max(engine.since, _utc(since))
    params = {"model": model, "served_from": since}
    total = int(engine.rows(SERVED_COUNTS, params)[0][0])
    sample = [_served_row(fields, predicted, instance)
              for predicted, instance in engine.rows(served_sample_sql(rows), params)]
    scan = engine.scan()
    window = {"from": since.isoformat(timespec="seconds"), "to": engine.until.isoformat(timespec="seconds"),
              "files": scan.files, "bad_lines": scan.bad_lines, "rows": total, "sampled_rows": len(sample)}
    return Served(sample, total, window)


@lru_cache(maxsize=4096)
def _label_truth(truth_json: str, labels: tuple[str, ...] | None) -> str | None:
    """A classifier's truth (its JSON text) in the prediction's terms: a few distinct texts, each resolved once."""
    return canonical_truth(_Prediction("", labels), orjson.loads(truth_json))


def _loads(text: Any) -> Any:
    return None if text is None else orjson.loads(text)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _labels(text: str | None) -> tuple[str, ...] | None:
    value = _loads(text)
    return tuple(value) if isinstance(value, list) and value and all(isinstance(v, str) for v in value) else None


def _probabilities(value: Any, labels: tuple[str, ...] | None) -> tuple[float, ...] | None:
    if labels is None or not isinstance(value, list) or len(value) != len(labels):
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class _Prediction:
    """Enough of a logged prediction to canonicalise a truth against it (retrain_job.data.feedback)."""

    predicted: Any
    labels: tuple[str, ...] | None

    @property
    def is_classifier(self) -> bool:
        return isinstance(self.predicted, str)


def join_feedback(engine: LogEngine, model: str, feedback_from: datetime, *, fields: Sequence[str] = (),
                  sample_rows: int | None = SAMPLE_ROWS, segments: Sequence[str] = (), served_rows: int = 0,
                  outputs: bool = True) -> Joined:
    """The model's feedback after `feedback_from` joined by prediction id to its predictions in the engine's
    window; joined rows carry the instance's `fields` only (`sample_rows` None: every joined row, else at most
    that many per version and role, by hash of id). With `served_rows`, the same pass also keeps about
    twice that many served rows (hashed) for `served_of` (drift), and per `segments` value the predictions' sums
    for `segment_stats`. Without `outputs`, joined rows carry no times, probabilities or interval, and neither the
    per-version sums (`totals`) nor the prediction stats are computed (a retrain's: the rows become training rows;
    late and the other counts are still counted)."""
    params = {"model": model, "feedback_from": _utc(feedback_from)}
    engine.materialize("line_counts", LINE_COUNTS, params)
    engine.materialize("items", ITEMS, params)
    lines_logged = int(engine.rows("SELECT prediction_lines FROM line_counts")[0][0] or 0)
    ppm = min(1_000_000, -(-2_000_000 * served_rows // max(lines_logged, 1))) if served_rows else 0
    engine.materialize("predictions", predictions_sql(segments, every=outputs), {**params, "sample_ppm": ppm})
    engine.materialize("checked", CHECKED)
    engine.materialize("winners", WINNERS)
    (lines, items, valid, unknown, invalid, ok_items, joined, late, other, prediction_lines,
     repeated) = (int(n or 0) for n in engine.rows(COUNTS, params)[0])  # COUNTIF of no rows may be NULL
    by_source = {source: int(n) for source, n in engine.rows(BY_SOURCE, params)}
    totals = {(version, role): JoinedTotals(*(int(v or 0) for v in (n, hits, scored, with_interval, inside)),
                                            float(squares or 0.0), float(absolutes or 0.0))
              for version, role, n, hits, scored, squares, absolutes, with_interval, inside
              in (engine.rows(JOINED_BY_VERSION, params) if outputs else ())}
    labelled = {key: t.rows for key, t in totals.items()}
    stats = tuple(PredictionStats(version, role, int(n), int(n_p), float(s or 0.0), float(spread or 0.0),
                                  bool(classifier), _labels(labels))
                  for version, role, n, n_p, s, spread, classifier, labels
                  in (engine.rows(PREDICTION_STATS, params) if outputs else ()))
    rows = []
    labels_of = cache(_labels)  # a handful of label lists, each logged on every line
    loads, wanted, only = orjson.loads, tuple(fields), frozenset(fields)
    query = joined_sample_sql(outputs, limited=sample_rows is not None)
    for (pid, version, role, predicted_json, truth, source, fb_ts, prediction_ts, labels_json, probabilities, low,
         high, instance_json) in engine.rows(query, {**params, "sample_rows": sample_rows or 0}):
        predicted, labels, instance = loads(predicted_json), labels_of(labels_json), loads(instance_json or "{}")
        rows.append(JoinedRow(  # positional: a million rows in a retrain
            pid, version, role,
            (instance if instance.keys() <= only else {name: instance[name] for name in wanted if name in instance})
            if type(instance) is dict else {},
            predicted,
            _label_truth(truth, labels) if type(predicted) is str else canonical_truth(
                _Prediction(predicted, labels), loads(truth)),
            source, fb_ts and _utc(fb_ts), prediction_ts and _utc(prediction_ts), labels,
            _probabilities(_loads(probabilities), labels) if outputs else None,
            None if low is None or high is None else (float(low), float(high))))
    counts = FeedbackCounts(
        lines=lines, items=items, malformed=items - valid, unknown_ids=unknown, invalid_truths=invalid,
        duplicates=ok_items - joined, joined=joined, late=late, other_model_lines=other, by_source=by_source)
    scan = engine.scan()
    window = Window(_utc(feedback_from), engine.since, engine.until, scan.files, scan.bad_lines,
                    prediction_lines, repeated)
    return Joined(model, window, tuple(rows), stats, counts, labelled, sampled=len(rows) < joined, totals=totals)


SEGMENT_STATS = """
SELECT model_version, role, segment_{i}, COUNT(*), COUNT(probability), SUM(probability),
       SUM(probability * (1 - probability)), LOGICAL_OR(classifier), MAX(labels)
FROM predictions GROUP BY model_version, role, segment_{i}"""


def segment_stats(engine: LogEngine, index: int) -> dict[str | None, tuple[PredictionStats, ...]]:
    """After `join_feedback` with segments: per value of the `index`-th segment field, each (version, role)'s
    prediction sums (a repeated id counted each time it was logged)."""
    out: dict[str | None, list[PredictionStats]] = {}
    for version, role, value, n, n_p, total, spread, classifier, labels in engine.rows(
            SEGMENT_STATS.format(i=int(index))):
        out.setdefault(value, []).append(PredictionStats(version, role, int(n), int(n_p), float(total or 0.0),
                                                         float(spread or 0.0), bool(classifier), _labels(labels)))
    return {value: tuple(stats) for value, stats in out.items()}


def served_of(engine: LogEngine, version: str, fields: Sequence[str], rows: int) -> list[dict]:
    """After `join_feedback` with `served_rows`: at most `rows` of the version's served rows (by hash of id),
    with their `fields` and `predicted`."""
    sql = (f"SELECT predicted, instance FROM predictions WHERE sampled AND model_version = @version "
           f"ORDER BY FARM_FINGERPRINT(id), id LIMIT {int(rows)}")
    return [_served_row(fields, predicted, instance) for predicted, instance in engine.rows(sql, {"version": version})]


def _served_row(fields: Sequence[str], predicted: str | None, instance: str | None) -> dict:
    """A served row's `fields` (None where not sent) and its `predicted` answer, from their JSON texts."""
    values = _loads(instance)
    values = values if isinstance(values, dict) else {}
    return {**{name: values.get(name) for name in fields}, "predicted": _loads(predicted)}


# a shadow's rows, one per (id, version) (its first line), beside the first answer given under the same id; and
# with the id's winning truth where one was fed back (after `join_feedback`)
SHADOW_PAIRS = f"""
WITH shadow AS (
  SELECT id, model_version, predicted, interval_low, interval_high FROM logged
  WHERE event IN ('prediction', 'prediction_rows') AND model = @model AND role = '{SHADOW_ROLE}'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY id, model_version ORDER BY ts, insert_id, k) = 1),
answered AS (
  SELECT id, COALESCE(model_version, 'unknown') AS model_version, COALESCE(role, 'unknown') AS role, predicted
  FROM logged
  WHERE event IN ('prediction', 'prediction_rows') AND model = @model AND {ANSWERED}
    AND id IN (SELECT id FROM shadow)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts, insert_id, k) = 1),
pairs AS (
  SELECT s.model_version AS shadow_version, a.model_version AS answered_version, a.role AS answered_role,
         STARTS_WITH(a.predicted, '"') AS classifier,
         LOWER(JSON_VALUE(s.predicted, '$')) = LOWER(JSON_VALUE(a.predicted, '$')) AS agree,
         SAFE_CAST(JSON_VALUE(s.predicted, '$') AS FLOAT64) - SAFE_CAST(JSON_VALUE(a.predicted, '$') AS FLOAT64)
           AS difference,
         w.id IS NOT NULL AS labelled,
         LOWER(TRIM(JSON_VALUE(w.truth, '$'))) = LOWER(JSON_VALUE(s.predicted, '$')) AS shadow_hit,
         LOWER(TRIM(JSON_VALUE(w.truth, '$'))) = LOWER(JSON_VALUE(a.predicted, '$')) AS answer_hit,
         SAFE_CAST(JSON_VALUE(s.predicted, '$') AS FLOAT64) - w.truth_number AS shadow_error,
         SAFE_CAST(JSON_VALUE(a.predicted, '$') AS FLOAT64) - w.truth_number AS answer_error,
         w.truth_number, s.interval_low, s.interval_high
  FROM shadow AS s JOIN answered AS a ON s.id = a.id LEFT JOIN winners AS w ON s.id = w.id),
scored AS (
  SELECT *, ABS(shadow_error) - ABS(answer_error) AS error_difference FROM pairs)
SELECT shadow_version, answered_version, answered_role, LOGICAL_OR(classifier), COUNT(*), COUNTIF(agree),
       COUNT(difference), SUM(ABS(difference)), SUM(difference * difference), COUNTIF(labelled),
       COUNTIF(labelled AND shadow_hit), COUNTIF(labelled AND answer_hit),
       COUNTIF(labelled AND shadow_hit <> answer_hit), COUNT(error_difference), SUM(error_difference),
       SUM(error_difference * error_difference), SUM(shadow_error * shadow_error), SUM(answer_error * answer_error),
       COUNTIF(labelled AND interval_low IS NOT NULL AND interval_high IS NOT NULL),
       COUNTIF(truth_number BETWEEN interval_low AND interval_high)
FROM scored GROUP BY shadow_version, answered_version, answered_role
ORDER BY shadow_version, answered_version, answered_role"""

SHADOW_SAMPLE = f"""
SELECT predicted FROM logged
WHERE event IN ('prediction', 'prediction_rows') AND model = @model AND role = '{SHADOW_ROLE}'
  AND model_version = @version
ORDER BY FARM_FINGERPRINT(id), id LIMIT @rows"""


def shadow_pairs(engine: LogEngine, model: str) -> list[ShadowPairs]:
    """After `join_feedback`: each shadow version beside each (version, role) that answered the ids it shadowed."""
    out = []
    for (shadow, version, role, classifier, *counts) in engine.rows(SHADOW_PAIRS, {"model": model}):
        (pairs, agreed, compared, abs_difference, squared_difference, labelled, shadow_hits, answer_hits, differing,
         scored, error_difference, error_squares, shadow_squares, answer_squares, with_interval, inside) = counts
        out.append(ShadowPairs(
            shadow, version, role, bool(classifier), int(pairs), int(agreed or 0), int(compared or 0),
            float(abs_difference or 0.0), float(squared_difference or 0.0), int(labelled or 0), int(shadow_hits or 0),
            int(answer_hits or 0), int(differing or 0), int(scored or 0), float(error_difference or 0.0),
            float(error_squares or 0.0), float(shadow_squares or 0.0), float(answer_squares or 0.0),
            int(with_interval or 0), int(inside or 0)))
    return out


def shadow_predictions(engine: LogEngine, model: str, version: str, rows: int) -> list:
    """At most `rows` of a shadow version's answers (by hash of id), for the drift of its predictions."""
    return [_loads(predicted) for (predicted,) in engine.rows(SHADOW_SAMPLE, {"model": model, "version": version,
                                                                              "rows": int(rows)})]


def labelled_rows(joined: Joined, target_name: str, *, id_name: str | None = None) -> list[dict]:
    """The joined rows as training rows (the instance's fields plus the target), one per prediction id; with
    `id_name`, each also names its prediction id under that key."""
    return [{**row.instance, target_name: row.truth, **({id_name: row.id} if id_name else {})} for row in joined.rows]


__all__ = ["SAMPLE_ROWS", "UNKNOWN", "join_feedback", "joined_sample_sql", "labelled_rows"]
