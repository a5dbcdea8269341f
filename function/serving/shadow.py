"""Shadow scoring: the pointer's shadow version scores requests already answered, off the request path.

A request the loader picks for the shadow (`ModelLoader.shadow_model`) hands its validated feature batch to
`ShadowScorer.submit` once its answer is built: one append to a bounded queue (`SHADOW_QUEUE` requests), or, when
the queue is full, a drop that is counted; a request never waits for the shadow, nor wakes a thread. One daemon
thread per process wakes every `SHADOW_INTERVAL_S` and takes all the queued work (one thread switch for many
requests, not one each). The requests of one wake-up answered by one version are predicted by the shadow in one
call per `SHADOW_BATCH_ROWS` rows and logged in one line (validated again only when the shadow's contract differs
from the answering version's: then request by request): the work per request is a share of one evaluator call and
one log line, which is what keeps the answers' own latency near where it was. A busy worker's wake-ups hold
hundreds of rows, which go to XGBoost, the cheapest per row at that size; the shadow's own copy of the model
runs it on one thread (`SHADOW_BOOSTER_THREADS`), so that it never spins on the cores answering requests, and
releases the interpreter's lock while it predicts. The batch bound keeps each stretch the thread holds that lock
short, which is what a request's p99 feels. Its rows carry the same prediction ids as the
answers, `role: shadow` and the shadow's `model_version`, and no `instance` (the answer's rows hold it). Their
event is the one of a batch's later entries (`PREDICTION_ROWS`): routed to the sinks and read by the monitor,
counted by no request metric. Whatever goes wrong (a bundle that cannot load, an evaluator that raises, inputs the
shadow's contract refuses) is counted and shown in `/health`, never raised: the answer was given before the shadow
began.

The thread takes its CPU from the same process as the requests: on Cloud Run that needs CPU allocated outside
requests too (`cpu_idle = false`, terraform/modules/model/shadow.tf), else the thread runs only while a request
is in flight and steals its time.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from function.serving.logs import CONTINUED_FIELDS, RequestLog, inference_rows
from shared.logline import PREDICTION_ROWS
from shared.model import ServingModel
from shared.predictor import Estimates
from shared.validation import FeatureBatch

SHADOW_ROLE = "shadow"  # the `role` of a shadow's log rows (beside stable, canary, fallback and shipped)
SHADOW_INTERVAL_S = 0.05  # how often the shadow's thread takes the queued requests
SHADOW_BATCH_ROWS = 256  # rows of several requests predicted in one call at most (a larger request: alone)
# XGBoost's threads for a shadow's large batches: one, so that it never spins on the cores the requests use
SHADOW_BOOSTER_THREADS = 1
log = logging.getLogger(__name__)


class ShadowStats:
    """One shadow version's counts in this process: scored, dropped (queue full) and failed requests, and the last
    failure while the most recent attempt failed."""

    __slots__ = ("_lock", "dropped", "error", "failed", "scored", "version")

    def __init__(self, version: str) -> None:
        self.version = version
        self._lock = threading.Lock()
        self.scored = self.dropped = self.failed = 0
        self.error: str | None = None

    def done(self, requests: int = 1) -> None:
        """Requests scored; the shadow works again."""
        with self._lock:
            self.scored += requests
            self.error = None

    def drop(self) -> None:
        """One request not scored: the queue was full."""
        with self._lock:
            self.dropped += 1

    def fail(self, error: str) -> None:
        """One request the shadow could not score, and why."""
        with self._lock:
            self.failed += 1
            self.error = error

    def counts(self) -> dict[str, int]:
        """What /health shows of the counts."""
        return {"scored": self.scored, "dropped": self.dropped, "failed": self.failed}


@dataclass(slots=True)
class ShadowWork:
    """One answered request for the shadow to score."""

    model: ServingModel  # the shadow version
    stats: ShadowStats
    answered: ServingModel  # the version that answered
    batch: FeatureBatch  # validated for the answering version's contract
    inputs: object  # the request's inputs as the core took them (dataplane Rows, Columns or Encoded)
    request_id: str


class ShadowScorer:
    """The process's shadow queue and its one worker thread (started on the first submit in each process)."""

    def __init__(self, request_log: RequestLog, capacity: int,
                 validate: Callable[[ServingModel, object], FeatureBatch]) -> None:
        self.request_log = request_log
        self.capacity = capacity
        self.validate = validate
        self._queue: deque = deque()
        self._busy = False  # the thread holds work taken from the queue
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._contracts: dict[tuple[str, str], bool] = {}  # (shadow, answering) versions -> same contract

    def submit(self, work: ShadowWork) -> None:
        """Queue an answered request for the shadow; never blocks (a full queue drops it, counted)."""
        if self._pid != os.getpid():  # first use in this process (a forked worker has no thread of its parent's)
            self._start()
        work_queue = self._queue
        if len(work_queue) < self.capacity:  # threads racing past the check overshoot it by a request or two
            work_queue.append(work)
        else:
            work.stats.drop()

    def join(self) -> None:
        """Wait until every queued request was scored (tests and benchmarks)."""
        while self._pid == os.getpid() and (self._queue or self._busy):
            time.sleep(SHADOW_INTERVAL_S)

    def score(self, works: list[ShadowWork]) -> None:
        """Predict queued requests with their shadow and queue the rows to log: those of one shadow version that
        answered versions of its contract in one call and one line; a failure is counted, never raised."""
        groups: dict[tuple[int, bool], list[ShadowWork]] = {}
        same_contract: dict[tuple[int, int], bool] = {}  # this call's pairs of versions, each compared once
        for work in works:
            pair = (id(work.model), id(work.answered))
            same = same_contract.get(pair)
            if same is None:
                same = same_contract[pair] = self._same_contract(work.model, work.answered)
            group = groups.get((pair[0], same))
            if group is None:
                groups[(pair[0], same)] = [work]
            else:
                group.append(work)
        for (_, same), group in groups.items():
            if same:
                for chunk in _chunks(group, SHADOW_BATCH_ROWS):
                    self._score_together(chunk)
            else:
                for work in group:
                    self._score_together([work], revalidate=True)

    def _score_together(self, group: list[ShadowWork], revalidate: bool = False) -> None:
        model = group[0].model
        try:
            start = time.perf_counter()
            batches = [self.validate(model, w.inputs) if revalidate else w.batch for w in group]
            outputs = model.predictor.predict(_joined(batches))
            predict_ms = int((time.perf_counter() - start) * 1e6) / 1000
            predicted = outputs.values if isinstance(outputs, Estimates) else outputs.labels(model.labels)
            ids = [w.request_id + "-0" if _rows(b) == 1 else f"{w.request_id}-{j}"
                   for w, b in zip(group, batches) for j in range(_rows(b))]
            fields, rows = inference_rows(model, outputs, group[0].request_id, predicted, None, ids=ids)
        except Exception as exc:  # the shadow's own fault: the answers it shadows were already given
            error = f"{type(exc).__name__}: {exc}"[:300]
            if group[0].stats.error != error:
                log.warning("shadow %s of %s failed: %s", model.version, model.name, error)
            for work in group:
                work.stats.fail(error)
            return
        payload = {"severity": "INFO", "message": f"shadow {model.name} {model.version}", "event": PREDICTION_ROWS,
                   "request_id": group[0].request_id, "model": model.name, "model_version": model.version,
                   "role": SHADOW_ROLE, "fallback": False, "rows": len(ids), "predict_ms": predict_ms, **fields}
        self.request_log.emit(payload, rows, CONTINUED_FIELDS, continued_event=None)
        stats = group[0].stats
        if all(work.stats is stats for work in group):
            stats.done(len(group))
        else:  # the pointer changed between these requests: each counts where it was submitted
            for work in group:
                work.stats.done()

    def _same_contract(self, shadow: ServingModel, answered: ServingModel) -> bool:
        """Whether the answering version's validated batch fits the shadow (compared once per pair of versions)."""
        key = (shadow.version, answered.version)
        same = self._contracts.get(key)
        if same is None:
            same = self._contracts[key] = shadow.contract == answered.contract
        return same

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = deque()
            threading.Thread(target=self._run, args=(self._queue,), name="shadow-scorer", daemon=True).start()
            self._pid = os.getpid()

    def _run(self, work_queue: deque) -> None:
        while True:
            time.sleep(SHADOW_INTERVAL_S)
            if work_queue:  # one batch per wake-up: what arrives meanwhile waits for the next
                self._busy = True
                taken = [work_queue.popleft() for _ in range(len(work_queue))]
                try:
                    self.score(taken)
                except Exception:  # a bug must not end the thread: every later request would go unscored
                    log.exception("shadow scoring failed")
                finally:
                    self._busy = False


def _chunks(group: list[ShadowWork], budget: int) -> list[list[ShadowWork]]:
    """Consecutive requests whose rows together stay within `budget`, each request whole."""
    chunks: list[list[ShadowWork]] = []
    rows = budget
    for work in group:
        n = _rows(work.batch)
        if rows + n > budget:
            chunks.append([])
            rows = 0
        chunks[-1].append(work)
        rows += n
    return chunks


def _rows(batch: FeatureBatch) -> int:
    return len(batch.rows) if batch.rows is not None else len(batch.matrix)


def _joined(batches: list[FeatureBatch]) -> FeatureBatch:
    """One batch of several requests' rows, as one matrix: the evaluators' vectorised path, not row by row."""
    if len(batches) == 1:
        return batches[0]
    if all(b.rows is not None for b in batches):
        return FeatureBatch([], _matrix=np.array([row for b in batches for row in b.rows], dtype=np.float32))
    return FeatureBatch([], _matrix=np.concatenate([b.matrix for b in batches]))
