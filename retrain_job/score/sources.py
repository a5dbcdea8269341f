"""The input files, the units of work they split into, each task's share of them, and the chunks a unit reads as.

An input is a file, a folder (every Parquet and CSV file under it, names starting with `_` or `.` left out, as
Spark and Cloud Storage exports name their markers) or a glob whose `*`, `?` and `[...]` stay within one path
segment; local or `gs://`. A Parquet file's units are its row groups, a CSV file is one unit. Every task lists
the same units in the same order and takes a contiguous run of them holding its share of the bytes, so the
shards cover every row exactly once and a task's shard is the same on every run of it.
"""
from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from retrain_job.score.storage import object_size, open_read
from shared.store import LocalStore, Store, open_store

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
GLOB_CHARS = frozenset("*?[")
CSV_BLOCK_BYTES = 4 * 1024 * 1024  # CSV text parsed per block (a chunk holds one block's rows)
HEADER_BYTES = 1 << 16  # read to find a CSV header line


class InputError(ValueError):
    """The input names no file, a file of no known format, or one without a column that was asked for."""


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is (its store and key), how it is shown, and its format."""

    uri: str
    store: Store
    key: str
    format: str


@dataclass(frozen=True)
class Unit:
    """A piece of work: a Parquet row group, or a whole CSV file (`row_group` None, its rows unknown)."""

    file: int  # index into the input files
    row_group: int | None
    first_row: int  # the file's row the unit starts at
    rows: int | None
    weight: int  # bytes: what the shards are balanced by


@dataclass(frozen=True)
class Chunk:
    """Rows read from one unit: `first_row` is the file's row of the batch's first; `text` for CSV cells."""

    file: int
    first_row: int
    batch: pa.RecordBatch
    text: bool


def resolve_inputs(uri: str) -> list[InputFile]:
    """The input files `uri` names, sorted; InputError if none (or a named file has no known format)."""
    base, pattern = _split(uri)
    if pattern is None:
        single = _single_file(base)
        if single is not None:
            store, key = single
            files = [InputFile(base, store, key, _format(key) or "")]
        else:  # a folder: every file under it
            store = open_store(base)
            files = [InputFile(_join(base, k), store, k, _format(k)) for k in store.list("")
                     if _format(k) and not _hidden(k)]
    else:
        store = open_store(base)
        literal = pattern[:min((pattern.index(c) for c in GLOB_CHARS if c in pattern), default=len(pattern))]
        prefix = literal.rsplit("/", 1)[0] + "/" if "/" in literal else ""
        files = [InputFile(_join(base, k), store, k, _format(k)) for k in store.list(prefix)
                 if _matches(k, pattern) and _format(k) and not _hidden(k)]
    if not files:
        raise InputError(f"{uri}: no Parquet or CSV file")
    if not files[0].format:
        raise InputError(f"{files[0].uri}: not a Parquet or CSV file (by its name: {', '.join(FORMATS)})")
    return files


def _split(uri: str) -> tuple[str, str | None]:
    """(the folder or file before any glob segment, the rest as a pattern or None)."""
    scheme = "gs://" if uri.startswith("gs://") else ""
    path = uri[len(scheme):].rstrip("/") if scheme else os.path.abspath(uri)
    parts = path.split("/")
    glob_at = next((i for i, p in enumerate(parts) if GLOB_CHARS & set(p)), None)
    if glob_at is None:
        return scheme + path, None
    return scheme + "/".join(parts[:glob_at]), "/".join(parts[glob_at:])


def _single_file(base: str) -> tuple[Store, str] | None:
    """The store of a name's folder and the name as its key, if the name is one object rather than a folder."""
    if "/" not in base.removeprefix("gs://"):
        return None  # a bucket
    parent, name = base.rsplit("/", 1)
    if not base.startswith("gs://"):
        return (LocalStore(parent), name) if Path(base).is_file() else None
    store = open_store(parent)
    return (store, name) if name in store.list(name) else None


def _join(base: str, key: str) -> str:
    return f"{base}/{key}" if key else base


def _format(key: str) -> str | None:
    return FORMATS.get(Path(key).suffix.lower())


def _hidden(key: str) -> bool:
    return any(part.startswith(("_", ".")) for part in key.split("/"))


def _matches(key: str, pattern: str) -> bool:
    """Segment by segment: a glob never crosses a `/`."""
    keys, patterns = key.split("/"), pattern.split("/")
    return len(keys) == len(patterns) and all(fnmatch.fnmatchcase(k, p) for k, p in zip(keys, patterns))


def plan_units(files: Sequence[InputFile]) -> list[Unit]:
    """Every unit of every file in order: each Parquet row group (from the file's footer), each CSV file whole."""
    units = []
    for i, f in enumerate(files):
        if f.format == "csv":
            units.append(Unit(i, None, 0, None, max(1, object_size(f.store, f.key))))
            continue
        with open_read(f.store, f.key) as handle:
            meta = pq.ParquetFile(handle).metadata
        first = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            units.append(Unit(i, g, first, group.num_rows, max(1, group.total_byte_size)))
            first += group.num_rows
    return units


def shard(units: Sequence[Unit], index: int, count: int) -> list[Unit]:
    """Task `index` of `count`: the units whose middle byte falls in its share of all the units' bytes."""
    total = sum(u.weight for u in units)
    mine, before = [], 0
    for unit in units:
        middle = before + unit.weight / 2
        if min(count - 1, int(count * middle / total)) == index:
            mine.append(unit)
        before += unit.weight
    return mine


def fingerprint(*parts: object) -> str:
    """A digest of the JSON of `parts`: what every task of one scoring run agrees on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def columns_of(file: InputFile) -> tuple[list[str], pa.Schema | None]:
    """A file's column names, and for Parquet its Arrow schema (CSV cells are text)."""
    with open_read(file.store, file.key) as handle:
        if file.format == "parquet":
            schema = pq.ParquetFile(handle).schema_arrow
            return schema.names, schema
        return _csv_header(handle), None


def _csv_header(handle) -> list[str]:
    head = handle.read(HEADER_BYTES)
    while b"\n" not in head:
        more = handle.read(HEADER_BYTES)
        if not more:
            break
        head += more
    line = head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    return next(csv.reader(io.StringIO(line)), [])


def read_chunks(file: InputFile, index: int, units: Sequence[Unit], *, wanted: Sequence[str],
                categories: frozenset[str], chunk_rows: int) -> Iterator[Chunk]:
    """The chunks of a file's units, in order: only the `wanted` columns the file has, `categories` among them
    read as dictionaries (a category repeats a few values)."""
    with open_read(file.store, file.key) as handle:
        if file.format == "csv":
            yield from _csv_chunks(handle, index, wanted)
            return
        meta_file = pq.ParquetFile(handle)
        schema = meta_file.schema_arrow
        present = [name for name in wanted if name in schema.names]
        as_dictionary = [name for name in present if name in categories and _is_text(schema.field(name).type)]
        parquet = pq.ParquetFile(handle, metadata=meta_file.metadata, read_dictionary=as_dictionary)
        for unit in units:
            first = unit.first_row
            for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[unit.row_group], columns=present,
                                              use_threads=False):
                yield Chunk(index, first, batch, False)
                first += batch.num_rows


def _csv_chunks(handle, index: int, wanted: Sequence[str]) -> Iterator[Chunk]:
    header = _csv_header(handle)
    handle.seek(0)
    present = [name for name in wanted if name in header]
    reader = pacsv.open_csv(
        handle, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
        convert_options=pacsv.ConvertOptions(include_columns=present, strings_can_be_null=False,
                                             column_types={name: pa.string() for name in present}))
    first = 0
    for batch in reader:
        yield Chunk(index, first, batch, True)
        first += batch.num_rows


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
