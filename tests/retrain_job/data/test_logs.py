"""The log queries on real sink files (DuckDB): the feedback join, held to the Python oracle, and the served sample."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from function.serving import logs
from function.serving.logs import LocalSink, sink_path
from retrain_job.data.engine import DuckDBEngine, Scan
from retrain_job.data.feedback import Joined
from retrain_job.data.logs import join_feedback, labelled_rows, served_sample, shadow_pairs
from retrain_job.monitor.quality import monitor
from shared.store import LocalStore
from tests.support.joins import engine_join
from tests.support.reference_join import read_log_entries

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
LABELS = ["a", "b", "c"]
PREFIX = "logs"


def instance(k: int) -> dict:
    """A request-shaped row told apart by `x`."""
    return {"x": float(k), "colour": "red" if k % 2 else "blue"}


class SinkLog:
    """Prediction and feedback entries written as the function writes them: LogEntry lines in the sink layout."""

    def __init__(self, store: LocalStore, prefix: str = PREFIX) -> None:
        self.store = store
        self.root = store.root / prefix
        self.sink = LocalSink(self.root)

    def prediction(self, request_id: str, predicted: list, *, at: datetime, model: str = "clf", version: str = "v1",
                   role: str = "stable", first_row: int | None = 0, rows: int | None = None,
                   instances: list[dict] | None = None, probabilities: list | None = None,
                   intervals: list | None = None, labels: list[str] | None = None,
                   event: str = "prediction") -> None:
        """One prediction entry; probabilities or intervals are left out when not given (as old lines)."""
        start = first_row or 0
        payload = {"severity": "INFO", "message": f"POST /v1/models/{model}:predict 200", "event": event,
                   "status": 200, "request_id": request_id, "model": model, "model_version": version, "role": role,
                   "fallback": role == "fallback", "rows": rows if rows is not None else start + len(predicted)}
        if first_row is not None:
            payload["first_row"] = first_row
        rows_logged = [{"id": f"{request_id}-{start + j}", "instance": x, "predicted": p} for j, (x, p) in
                       enumerate(zip(instances or [instance(start + j) for j in range(len(predicted))], predicted))]
        if probabilities is not None:
            payload["labels"] = labels = labels or LABELS
            for row, p in zip(rows_logged, probabilities):
                row["probabilities"] = p
                row["probability"] = p[labels.index(row["predicted"])] if row["predicted"] in labels else max(p)
        if intervals is not None:
            for row, interval in zip(rows_logged, intervals):
                row["interval"] = interval
        payload["data"] = orjson.dumps(rows_logged).decode()  # as the function encodes: inf is null
        self.sink.append(payload, "INFO", at)

    def feedback(self, items: list[dict], *, at: datetime, model: str = "clf", source: str | None = "labelling-team",
                 ) -> None:
        """One feedback entry (no `source` key when source is None)."""
        payload = {"severity": "INFO", "message": f"POST /v1/models/{model}:feedback 200", "event": "feedback",
                   "model": model, "data": orjson.dumps(items).decode()}
        if source is not None:
            payload["source"] = source
        self.sink.append(payload, "INFO", at)

    def join(self, model: str = "clf", **kwargs) -> Joined:
        """Everything written so far on disk, then the join at NOW."""
        logs.flush()
        return engine_join(self.store, model, NOW, PREFIX, **kwargs)


@pytest.fixture
def log(tmp_path) -> SinkLog:
    return SinkLog(LocalStore(tmp_path / "bucket"))


def probs(*rows: tuple[float, float, float]) -> list[list[float]]:
    return [list(r) for r in rows]


def test_feedback_joins_its_predictions_row_by_row_with_everything_logged(log):
    at = NOW - timedelta(hours=3)
    log.prediction("r1", ["a", "b", "c"], at=at,
                   probabilities=probs((0.8, 0.1, 0.1), (0.2, 0.7, 0.1), (0.1, 0.1, 0.8)))
    log.feedback([{"id": "r1-0", "truth": "a"}, {"id": "r1-2", "truth": "b"}], at=at + timedelta(minutes=5))
    joined = log.join()
    assert [(r.id, r.predicted, r.truth) for r in joined.rows] == [("r1-0", "a", "a"), ("r1-2", "c", "b")]
    row = joined.rows[1]
    assert (row.model_version, row.role, row.source, row.instance) == ("v1", "stable", "labelling-team", instance(2))
    assert row.labels == ("a", "b", "c") and row.probabilities == (0.1, 0.1, 0.8) and row.interval is None
    assert row.feedback_time == at + timedelta(minutes=5) and row.prediction_time == at and not row.late
    assert row.predicted_probability == 0.8
    assert [(p.predictions, p.with_probability) for p in joined.predictions] == [(3, 3)]  # labelled or not
    c = joined.counts
    assert (c.lines, c.items, c.joined, c.unknown_ids, c.duplicates, c.late) == (1, 2, 2, 0, 0, 0)
    assert dict(c.by_source) == {"labelling-team": 2}
    assert labelled_rows(joined, "target") == [{**instance(0), "target": "a"}, {**instance(2), "target": "b"}]


def test_unknown_id_is_dropped_and_counted(log):
    log.prediction("r1", ["a"], at=NOW - timedelta(hours=2))
    log.feedback([{"id": "r1-0", "truth": "a"}, {"id": "nobody-0", "truth": "b"}, {"id": "r1-7", "truth": "b"}],
                 at=NOW - timedelta(hours=1))
    joined = log.join()
    assert [r.id for r in joined.rows] == ["r1-0"]
    assert joined.counts.unknown_ids == 2 and joined.counts.items == 3 and joined.counts.joined == 1


def test_duplicate_feedback_counts_once_and_the_last_truth_wins(log):
    log.prediction("r1", ["a", "b"], at=NOW - timedelta(hours=5))
    log.feedback([{"id": "r1-0", "truth": "c"}], at=NOW - timedelta(hours=1), source="team-b")  # newest: wins
    log.feedback([{"id": "r1-0", "truth": "b"}], at=NOW - timedelta(hours=3))  # written later, stamped earlier
    same = NOW - timedelta(hours=2)
    log.feedback([{"id": "r1-1", "truth": "a"}], at=same)
    log.feedback([{"id": "r1-1", "truth": "c"}], at=same)  # same timestamp: file order decides
    joined = log.join()
    assert {r.id: (r.truth, r.source) for r in joined.rows} == {"r1-0": ("c", "team-b"),
                                                                "r1-1": ("c", "labelling-team")}
    assert joined.counts.duplicates == 2 and joined.counts.joined == 2 and joined.counts.items == 4
    assert dict(joined.counts.by_source) == {"labelling-team": 3, "team-b": 1}
    assert labelled_rows(joined, "y") == [{**instance(1), "y": "c"}, {**instance(0), "y": "c"}]


def test_feedback_stamped_before_its_prediction_line_still_joins_as_late(log):
    log.feedback([{"id": "r9-0", "truth": "b"}], at=NOW - timedelta(hours=2), source=None)
    log.prediction("r9", ["b"], at=NOW - timedelta(hours=1))
    joined = log.join()
    [row] = joined.rows
    assert row.id == "r9-0" and row.late and row.source == "unknown"
    assert joined.counts.late == 1 and joined.counts.unknown_ids == 0


def test_feedback_for_another_model_is_ignored(log):
    log.prediction("r1", ["a"], at=NOW - timedelta(hours=2))
    log.prediction("r2", [3.5], at=NOW - timedelta(hours=2), model="other")
    log.feedback([{"id": "r1-0", "truth": "b"}, {"id": "r2-0", "truth": 4.0}], at=NOW - timedelta(hours=1),
                 model="other")
    joined = log.join()
    assert joined.rows == () and joined.counts.items == 0 and joined.counts.lines == 0
    assert joined.counts.other_model_lines == 1
    assert [p.predictions for p in joined.predictions] == [1]
    other = log.join("other")
    assert [(r.id, r.truth) for r in other.rows] == [("r2-0", 4.0)]
    assert other.counts.unknown_ids == 1  # r1-0 is not one of its predictions


def test_a_batch_split_over_two_entries_joins_row_by_row(log):
    at = NOW - timedelta(hours=4)
    log.prediction("big", ["a", "b"], at=at, first_row=0, rows=5, probabilities=probs((0.9, 0.05, 0.05),
                                                                                      (0.1, 0.6, 0.3)))
    log.prediction("big", ["c", "c", "a"], at=at, first_row=2, rows=5,
                   probabilities=probs((0.1, 0.1, 0.8), (0.2, 0.2, 0.6), (0.5, 0.4, 0.1)))
    log.feedback([{"id": f"big-{k}", "truth": t} for k, t in enumerate("abcab")], at=at + timedelta(seconds=30))
    joined = log.join()
    got = {r.id: (r.instance["x"], r.predicted, r.probabilities[0]) for r in joined.rows}
    assert got == {"big-0": (0.0, "a", 0.9), "big-1": (1.0, "b", 0.1), "big-2": (2.0, "c", 0.1),
                   "big-3": (3.0, "c", 0.2), "big-4": (4.0, "a", 0.5)}
    assert joined.counts.joined == 5 and [p.predictions for p in joined.predictions] == [5]


def test_old_lines_without_first_row_or_probabilities_still_join(log):
    log.prediction("old", ["a", "b"], at=NOW - timedelta(hours=2), first_row=None)
    log.feedback([{"id": "old-1", "truth": "b"}], at=NOW - timedelta(hours=1))
    [row] = log.join().rows
    assert (row.id, row.instance["x"], row.probabilities, row.labels, row.predicted_probability) == \
        ("old-1", 1.0, None, None, None)


def test_windows_bound_feedback_and_the_predictions_it_may_be_about(log):
    log.prediction("ancient", ["a"], at=NOW - timedelta(hours=24, days=7, minutes=1))  # before the prediction window
    log.prediction("week", ["a"], at=NOW - timedelta(hours=24, days=6))
    log.feedback([{"id": "week-0", "truth": "a"}], at=NOW - timedelta(hours=25))  # before the feedback window
    log.feedback([{"id": "ancient-0", "truth": "a"}, {"id": "week-0", "truth": "b"}], at=NOW - timedelta(hours=23))
    log.feedback([{"id": "week-0", "truth": "c"}], at=NOW + timedelta(minutes=1))  # after now
    joined = log.join()
    assert [(r.id, r.truth) for r in joined.rows] == [("week-0", "b")]
    assert joined.counts.lines == 1 and joined.counts.unknown_ids == 1
    assert [p.predictions for p in joined.predictions] == [1]
    assert joined.window.predictions_from == NOW - timedelta(hours=24, days=7)
    wider = log.join(feedback_hours=48, prediction_days=6)
    assert wider.counts.lines == 2 and [r.truth for r in wider.rows] == ["b"] and wider.counts.duplicates == 1
    narrow = log.join(feedback_hours=48, prediction_days=1)  # "week" is now too old to be joined
    assert narrow.rows == () and narrow.counts.unknown_ids == 3


def test_every_item_lands_in_one_count_and_truths_are_checked_against_the_prediction(log):
    at = NOW - timedelta(hours=2)
    log.prediction("c1", ["a", "b"], at=at, probabilities=probs((0.6, 0.3, 0.1), (0.2, 0.7, 0.1)))
    log.prediction("r1", [10.0, 20.0], at=at, model="reg", intervals=[[8.0, 12.0], [15.0, 25.0]])
    log.feedback([{"id": "c1-0", "truth": " A "}, {"id": "c1-1", "truth": "zebra"}, {"id": "c1-1", "truth": 3},
                  {"truth": "a"}, "c1-0", {"id": "c1-0", "truth": "b"}, {"id": "zz-0", "truth": "a"}],
                 at=at + timedelta(minutes=1))
    log.feedback([{"id": "r1-0", "truth": 11}, {"id": "r1-1", "truth": "30.5"}, {"id": "r1-1", "truth": "x"},
                  {"id": "r1-0", "truth": float("inf")}, {"id": "r1-0", "truth": True}], at=at + timedelta(minutes=1),
                 model="reg")
    joined = log.join()
    c = joined.counts
    assert {r.id: r.truth for r in joined.rows} == {"c1-0": "b"}
    assert (c.items, c.malformed, c.unknown_ids, c.invalid_truths, c.duplicates, c.joined) == (7, 2, 1, 2, 1, 1)
    assert c.items == c.malformed + c.unknown_ids + c.invalid_truths + c.duplicates + c.joined
    reg = log.join("reg")
    assert {r.id: (r.truth, r.interval) for r in reg.rows} == {"r1-0": (11.0, (8.0, 12.0)),
                                                                 "r1-1": (30.5, (15.0, 25.0))}
    # "x" and a bool never replace a truth; inf is logged as null, an item without a truth
    assert (reg.counts.invalid_truths, reg.counts.malformed, reg.counts.joined) == (2, 1, 2)
    assert labelled_rows(reg, "y") == [{**instance(0), "y": 11.0}, {**instance(1), "y": 30.5}]


def test_the_reader_lists_only_the_window_days_and_counts_bad_lines(log):
    log.prediction("p", ["a"], at=NOW - timedelta(hours=1))
    log.prediction("q", ["a"], at=NOW - timedelta(days=30))
    logs.flush()
    path = sink_path(log.root, NOW - timedelta(hours=1))
    with path.open("ab") as f:
        f.write(b"not json\n{\"jsonPayload\": {\"event\": \"prediction\"}}\n")
    entries, read = read_log_entries(log.store, PREFIX, NOW - timedelta(days=2), NOW)
    assert [e.payload["request_id"] for e in entries] == ["p"]
    assert (read.files, read.bad_lines) == (1, 2)  # the second bad line has no timestamp
    engine = DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=2), NOW)
    try:
        assert engine.scan() == Scan(files=1, bad_lines=1)  # the object without a timestamp is read, then dropped
        assert engine.rows("SELECT COUNT(*) FROM lines") == [(1,)]
    finally:
        engine.close()


def test_clean_files_are_read_once_strictly_and_a_bad_line_makes_a_lenient_second_read(log, caplog):
    log.prediction("p", ["a"], at=NOW - timedelta(hours=1))
    logs.flush()
    caplog.set_level("INFO", logger="retrain_job.data.engine")
    DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=2), NOW).close()
    assert not [r for r in caplog.records if "reading again" in r.getMessage()]  # the faster, strict read sufficed
    with sink_path(log.root, NOW - timedelta(hours=1)).open("ab") as f:
        f.write(b"not json\n")
    engine = DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=2), NOW)
    try:
        assert engine.rows("SELECT id FROM logged") == [("p-0",)] and engine.scan().bad_lines == 1
    finally:
        engine.close()
    assert [r for r in caplog.records if "reading again" in r.getMessage()]


def test_a_line_whose_data_is_no_json_array_is_counted_as_bad_and_the_rest_is_read(log):
    log.prediction("p", ["a"], at=NOW - timedelta(hours=1))
    logs.flush()
    stamp = (NOW - timedelta(hours=1)).isoformat()
    with sink_path(log.root, NOW - timedelta(hours=1)).open("ab") as f:
        for data in ("not json", '{"id": "q-0"}'):
            f.write(orjson.dumps({"timestamp": stamp, "insertId": data[:3], "jsonPayload": {
                "event": "prediction", "model": "clf", "data": data}}) + b"\n")
    engine = DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=2), NOW)
    try:
        assert engine.rows("SELECT id FROM logged") == [("p-0",)]
        assert engine.scan() == Scan(files=1, bad_lines=2)
    finally:
        engine.close()


def test_served_rows_are_the_models_own_sampled_by_id_with_the_total(log):
    log.prediction("co", [250.5, 300.0], at=NOW - timedelta(hours=1), model="co2",
                   instances=[{"make": "FORD", "x": 1}, {"make": "KIA"}], intervals=[[240.0, 260.0], [290.0, 310.0]])
    log.prediction("pe", ["a"], at=NOW - timedelta(hours=1), model="penguins", instances=[{"island": "Dream"}])
    log.prediction("old", [1.0], at=NOW - timedelta(days=9), model="co2", instances=[{"make": "SAAB"}])
    logs.flush()
    with sink_path(log.root, NOW - timedelta(hours=1)).open("ab") as f:
        f.write(b"not json\n")
    engine = DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=7), NOW)
    try:
        served = served_sample(engine, "co2", ["make", "engine_size_l"])
        one = served_sample(engine, "co2", ["make"], rows=1)
    finally:
        engine.close()
    assert sorted(served.rows, key=lambda r: r["make"]) == [
        {"make": "FORD", "engine_size_l": None, "predicted": 250.5},
        {"make": "KIA", "engine_size_l": None, "predicted": 300.0}]
    assert served.total == 2 and (served.window["files"], served.window["bad_lines"]) == (1, 1)
    assert one.total == 2 and len(one.rows) == 1 and one.rows[0]["make"] in ("FORD", "KIA")


def test_a_sampled_join_still_reports_accuracy_rmse_and_coverage_over_every_row(log):
    at = NOW - timedelta(hours=3)
    answers = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"]
    log.prediction("c", answers, at=at, probabilities=probs(*[(0.6, 0.3, 0.1)] * 10))
    log.feedback([{"id": f"c-{k}", "truth": t} for k, t in enumerate("abcabcaaaa")], at=at + timedelta(minutes=1))
    log.prediction("r", [float(k) for k in range(10)], at=at, model="reg",
                   intervals=[[k - 1.0, k + 1.0] for k in range(10)])
    log.feedback([{"id": f"r-{k}", "truth": k + (3.0 if k % 3 == 0 else 0.5)} for k in range(10)],
                 at=at + timedelta(minutes=1), model="reg")
    for model, names in (("clf", ("accuracy",)), ("reg", ("rmse", "mae", "coverage"))):
        whole = log.join(model)
        sampled = engine_join(log.store, model, NOW, PREFIX, sample_rows=4, check=False)
        assert sampled.sampled and len(sampled.rows) == 4 and dict(sampled.labelled) == dict(whole.labelled)
        [everything] = monitor(whole, min_labels=1).versions
        [from_sample] = monitor(sampled, min_labels=1).versions
        assert from_sample.labels == everything.labels == 10
        for name in names:
            assert from_sample.metrics[name].value == pytest.approx(everything.metrics[name].value), name
            assert from_sample.metrics[name].n == everything.metrics[name].n == 10, name
        if model == "clf":
            assert from_sample.metrics["accuracy"].value == pytest.approx(0.8)  # 8 of 10 over all rows
            assert (from_sample.metrics["accuracy"].low, from_sample.metrics["accuracy"].high) == pytest.approx(
                (everything.metrics["accuracy"].low, everything.metrics["accuracy"].high))


def test_shadow_rows_pair_with_the_answers_given_and_are_never_counted_as_answers(log):
    at = NOW - timedelta(hours=2)
    # the shadow's line is stamped first: the join must still take the answer given, not the shadow's
    log.prediction("r1", ["a", "c", "c", "b"], at=at - timedelta(seconds=1), version="v2", role="shadow",
                   event="prediction_rows", probabilities=probs(*[(0.4, 0.3, 0.3)] * 4))
    log.prediction("r1", ["a", "b", "c", "a"], at=at, probabilities=probs(*[(0.5, 0.3, 0.2)] * 4))
    log.prediction("r2", [1.0], at=at, model="reg", intervals=[[0.0, 2.0]])
    log.prediction("r2", [3.0], at=at, model="reg", version="v2", role="shadow", event="prediction_rows",
                   intervals=[[2.5, 3.5]])
    log.feedback([{"id": "r1-0", "truth": "a"}, {"id": "r1-1", "truth": "c"}, {"id": "r1-3", "truth": "a"}],
                 at=at + timedelta(minutes=5))
    log.feedback([{"id": "r2-0", "truth": 1.5}], at=at + timedelta(minutes=5), model="reg")
    logs.flush()
    engine = DuckDBEngine.for_store(log.store, PREFIX, NOW - timedelta(days=7), NOW)
    try:
        joined = join_feedback(engine, "clf", NOW - timedelta(hours=24), fields=("x",))
        [clf] = shadow_pairs(engine, "clf")
        served = served_sample(engine, "clf", ["x"])
        reg_joined = join_feedback(engine, "reg", NOW - timedelta(hours=24), fields=("x",))
        [reg] = shadow_pairs(engine, "reg")
    finally:
        engine.close()
    # the answers given alone: three joined, as stable answered them; four served rows, no repeated id
    assert [(r.id, r.model_version, r.role, r.predicted) for r in joined.rows] == [
        ("r1-0", "v1", "stable", "a"), ("r1-1", "v1", "stable", "b"), ("r1-3", "v1", "stable", "a")]
    assert joined.window.prediction_lines == 1 and joined.window.repeated_predictions == 0
    assert [(s.model_version, s.role, s.predictions) for s in joined.predictions] == [("v1", "stable", 4)]
    assert served.total == 4
    # agreement on rows 0 and 2; with truths: shadow right on 0 and 1, stable on 0 and 3
    assert (clf.shadow_version, clf.answered_version, clf.answered_role, clf.classifier) == ("v2", "v1", "stable", True)
    assert (clf.pairs, clf.agreed, clf.labelled, clf.shadow_hits, clf.answer_hits, clf.differing_hits) == (
        4, 2, 3, 2, 2, 2)
    assert [(r.id, r.predicted, r.interval) for r in reg_joined.rows] == [("r2-0", 1.0, (0.0, 2.0))]
    assert not reg.classifier and (reg.pairs, reg.compared, reg.abs_difference, reg.squared_difference) == (
        1, 1, 2.0, 4.0)
    # |3 - 1.5| - |1 - 1.5| = 1; the shadow's interval [2.5, 3.5] misses 1.5
    assert (reg.labelled, reg.scored, reg.error_difference, reg.shadow_squares, reg.answer_squares) == (
        1, 1, 1.0, 2.25, 0.25)
    assert (reg.with_interval, reg.inside) == (1, 0)
