"""One task of a scoring run: its shard of the input read chunk by chunk, judged, predicted and written, then committed.

The model is the serving version (the pointer's stable) unless a version is named, loaded and verified as the
function loads it. Chunks are read in order by this thread and scored by a small pool (validation in NumPy and
Arrow, prediction in XGBoost: both release the GIL), at most `WINDOW` chunks ahead of the writer, so memory holds a
few chunks whatever the size of the input. Each input file is one request id; a row's prediction id is that id
and the row's number in its file, so a rerun gives every row the id it had.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from retrain_job.score.answers import answer_arrays, answer_fields, predict, prediction_ids
from retrain_job.score.columns import Fields, judge, typed_text
from retrain_job.score.outputs import (
    MANIFEST,
    ShardFiles,
    clear_other_plans,
    complete,
    errors_key,
    part_key,
    write_marker,
)
from retrain_job.score.predlog import LineEncoder, LogParts, StdoutLog, registry_key
from retrain_job.score.sources import (
    Chunk,
    InputError,
    InputFile,
    Unit,
    columns_of,
    fingerprint,
    plan_units,
    read_chunks,
    resolve_inputs,
    shard,
)
from shared.bundle import read_bundle
from shared.logline import job_settings, log_policies
from shared.model import ServingModel, load_model
from shared.pointer import read_pointer
from shared.settings import Settings
from shared.store import NotFound, open_store

log = logging.getLogger(__name__)
CHUNK_ROWS = 65_536  # rows validated and predicted at once
WORKERS = max(1, os.cpu_count() or 1)
WINDOW = 2  # chunks in flight per worker
PROGRESS_S = 10.0  # seconds between progress lines
SHOWN_ERRORS = 5  # refused rows shown in the summary


class ScoreError(Exception):
    """A scoring run that cannot start: no model, no input, a column asked for that a file lacks."""


@dataclass(frozen=True)
class ScoreOptions:
    """What one task scores, where the answers go, and its place among the run's tasks."""

    model: str
    inputs: str
    output: str
    store: str
    version: str | None = None
    id_columns: tuple[str, ...] = ()
    log: bool = False
    log_prefix: str = "logs"
    log_engine: str = "duckdb"  # where the job reads logs, so where `log` writes them (retrain_job/score/predlog.py)
    task_index: int = 0
    task_count: int = 1
    job: str = "local"
    chunk_rows: int = CHUNK_ROWS
    workers: int = WORKERS


@dataclass
class _Scored:
    """One chunk's outcome, for the writer."""

    file: int
    rows_in: int
    table: pa.Table | None
    errors: list[tuple[int, str, str]]
    lines: bytes
    logged: int


def load_served(store_uri: str, name: str, version: str | None) -> ServingModel:
    """The model the function would serve (the pointer's stable), or the named version; ScoreError if neither."""
    store = open_store(store_uri)
    if version is None:
        pointer, _ = read_pointer(store, name)
        if pointer is None:
            raise ScoreError(f"model {name!r} has no serving pointer in {store.uri}: publish it, or name --version")
        version = pointer.stable
    try:
        bundle = read_bundle(store, name, version)
    except NotFound:
        raise ScoreError(f"model {name!r} has no version {version!r} in {store.uri}") from None
    return load_model(name, bundle, "store", Settings().fast_predictor_max_rows)


def request_id(model: str, output: str, file: InputFile) -> str:
    """The request id of one input file's rows: the same on every run into the same output folder."""
    return "b" + hashlib.sha256(f"{model}\n{output}\n{file.uri}".encode()).hexdigest()[:12]


def score(opts: ScoreOptions) -> dict:
    """Score this task's shard and commit it; the summary (the manifest's state included)."""
    started = time.perf_counter()
    model = load_served(opts.store, opts.model, opts.version)
    try:
        files = resolve_inputs(opts.inputs)
        units = plan_units(files)
    except InputError as exc:
        raise ScoreError(str(exc)) from None
    fields = Fields(model.contract)
    answers = answer_fields(model)
    id_fields = _id_fields(files[0], opts.id_columns, {f.name for f in answers})
    out_store = open_store(opts.output)
    plan = fingerprint(opts.model, model.version, out_store.uri, [f.uri for f in files],
                       [(u.file, u.row_group, u.first_row, u.rows, u.weight) for u in units], opts.task_count,
                       list(opts.id_columns))
    mine = shard(units, opts.task_index, opts.task_count)
    index, count = opts.task_index, opts.task_count
    clear_other_plans(out_store, plan, count)
    logs = None
    to_stdout = opts.log_engine.lower() == "bigquery"
    if opts.log and to_stdout:
        logs = StdoutLog()
    elif opts.log:
        logs = LogParts(open_store(opts.store), opts.log_prefix, f"{plan[:12]}-{index:05d}", out_store,
                        registry_key(index, count))
        removed = logs.remove_previous()
        if removed:
            log.info("removed the %d log objects of this task's previous run", removed)
    schema = pa.schema([*id_fields, *answers])
    shard_files = ShardFiles(out_store, index, count, schema)
    task = _Task(opts, model, fields, files, schema, tuple(f.name for f in id_fields),
                 tuple(request_id(opts.model, out_store.uri, f) for f in files),
                 LineEncoder(model, opts.job, log_policies(job_settings(opts.store), [model.name]).get(model.name),
                             entries=not to_stdout) if opts.log else None)
    counts: Counter = Counter()
    by_field: Counter = Counter()
    shown: list[dict] = []
    progress = _Progress(index, count, started)
    try:
        for scored in task.scored(mine):
            file = files[scored.file].uri
            if scored.table is not None:
                shard_files.write_rows(scored.table)
            shard_files.write_errors(file, scored.errors)
            if logs is not None:
                logs.add(scored.lines, scored.logged)
            counts["rows_in"] += scored.rows_in
            counts["rows_scored"] += 0 if scored.table is None else scored.table.num_rows
            rejected = {row for row, _, _ in scored.errors}
            counts["rows_rejected"] += len(rejected)
            by_field.update(name for _, name, _ in scored.errors)
            shown += [{"file": file, "row": row, "field": name, "message": message}
                      for row, name, message in scored.errors[:SHOWN_ERRORS - len(shown)]]
            progress.update(counts)
        if logs is not None:
            logs.flush()
        shard_files.commit()
    except BaseException:
        shard_files.abort()
        raise
    seconds = time.perf_counter() - started
    marker = {"plan": plan, "index": index, "count": count, "model": opts.model, "version": model.version,
              "part": part_key(index, count), "errors": errors_key(index, count),
              "rows_in": counts["rows_in"], "rows_scored": counts["rows_scored"],
              "rows_rejected": counts["rows_rejected"], "units": len(mine), "seconds": round(seconds, 3)}
    write_marker(out_store, index, count, marker)
    manifest = complete(out_store, plan, count, {"model": opts.model, "version": model.version,
                                                 "inputs": [f.uri for f in files]})
    log.info("task %d of %d: %d rows scored, %d rejected in %.1f s (%.0f rows/s)", index, count,
             counts["rows_scored"], counts["rows_rejected"], seconds, counts["rows_in"] / max(seconds, 1e-9))
    summary = {"command": "score", "decision": "scored", "model": opts.model, "version": model.version,
               "task": index, "tasks": count, "input_files": len(files), "units": len(mine),
               "rows_in": counts["rows_in"], "rows_scored": counts["rows_scored"],
               "rows_rejected": counts["rows_rejected"], "rejected_by_field": dict(sorted(by_field.items())),
               "first_errors": shown, "output": out_store.uri, "part": part_key(index, count),
               "errors": errors_key(index, count), "complete": manifest is not None,
               "manifest": MANIFEST if manifest is not None else None,
               "seconds": round(seconds, 3), "rows_per_s": round(counts["rows_in"] / max(seconds, 1e-9))}
    if logs is not None:
        summary["logged_rows"] = logs.rows
        summary["log_objects"] = len(logs.keys)
    return summary


def _id_fields(first: InputFile, names: Sequence[str], reserved: set[str]) -> list[pa.Field]:
    """The named input columns' output fields, typed as the first file types them (CSV cells: text)."""
    clash = [n for n in names if n in reserved]
    if clash:
        raise ScoreError(f"--id-columns {', '.join(clash)}: the output has columns of that name")
    columns, schema = columns_of(first)
    missing = [n for n in names if n not in columns]
    if missing:
        raise ScoreError(f"{first.uri}: no column {', '.join(missing)} (--id-columns)")
    out = []
    for name in names:
        kind = pa.string() if schema is None else schema.field(name).type
        out.append(pa.field(name, kind.value_type if pa.types.is_dictionary(kind) else kind))
    return out


@dataclass(frozen=True)
class _Task:
    """What scoring a chunk needs: the model, its fields, the inputs and their request ids, the output schema."""

    opts: ScoreOptions
    model: ServingModel
    fields: Fields
    files: Sequence[InputFile]
    schema: pa.Schema
    id_names: tuple[str, ...]
    request_ids: tuple[str, ...]
    encoder: LineEncoder | None

    def chunks(self, mine: Sequence[Unit]) -> Iterator[Chunk]:
        """This task's chunks in order, each file opened once for its run of units."""
        wanted = list(dict.fromkeys([*self.fields.kinds, *self.id_names]))
        start = 0
        while start < len(mine):
            end = start
            while end < len(mine) and mine[end].file == mine[start].file:
                end += 1
            file = mine[start].file
            yield from read_chunks(self.files[file], file, mine[start:end], wanted=wanted,
                                   categories=self.fields.text_fields, chunk_rows=self.opts.chunk_rows)
            start = end

    def scored(self, mine: Sequence[Unit]) -> Iterator[_Scored]:
        """Each chunk scored, in input order, by a pool at most WINDOW chunks per worker ahead of the caller."""
        workers = self.opts.workers
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
            for chunk in self.chunks(mine):
                pending.append(pool.submit(self.score_chunk, chunk))
                while len(pending) >= workers * WINDOW:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def score_chunk(self, chunk: Chunk) -> _Scored:
        """Validate, predict and shape one chunk (no I/O: the caller writes)."""
        given, schema, fields = chunk.batch, self.schema, self.fields
        missing = [n for n in self.id_names if n not in given.schema.names]
        if missing:
            raise ScoreError(f"{self.files[chunk.file].uri}: no column {', '.join(missing)} (--id-columns)")
        batch = typed_text(fields, given) if chunk.text else given
        judged = judge(fields, batch, chunk.text)
        errors = [(chunk.first_row + int(p), name, message) for p, name, message in judged.errors]
        if judged.batch is None:
            return _Scored(chunk.file, given.num_rows, None, errors, b"", 0)
        out = predict(self.model, judged.batch)
        every = len(judged.rows) == given.num_rows
        taken = pa.array(judged.rows)
        rows = chunk.first_row + judged.rows
        rid = self.request_ids[chunk.file]
        id_arrays = [(given.column(n) if every else given.column(n).take(taken)).cast(schema.field(n).type)
                     for n in self.id_names]
        answers = answer_arrays(self.model, out, judged.batch.warnings)
        table = pa.Table.from_arrays([*id_arrays, prediction_ids(rid, rows), *answers], schema=schema)
        lines = b""
        if self.encoder is not None:
            inputs = batch.select([n for n in batch.schema.names if n in fields.kinds])
            lines = self.encoder.lines(rid, rows, inputs if every else inputs.take(taken), out)
        return _Scored(chunk.file, given.num_rows, table, errors, lines, len(rows))


class _Progress:
    """A progress line on the job's log every PROGRESS_S: rows so far and the rate."""

    def __init__(self, index: int, count: int, started: float) -> None:
        self.index, self.count, self.started = index, count, started
        self.next = started + PROGRESS_S

    def update(self, counts: Counter) -> None:
        now = time.perf_counter()
        if now >= self.next:
            self.next = now + PROGRESS_S
            log.info("task %d of %d: %d rows read, %d scored, %d rejected, %.0f rows/s", self.index, self.count,
                     counts["rows_in"], counts["rows_scored"], counts["rows_rejected"],
                     counts["rows_in"] / max(now - self.started, 1e-9))

