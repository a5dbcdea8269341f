"""Every environment setting of the function and the job: declared, parsed and validated in one place.

The fields of `Settings` are the table: each names its variable, what it accepts, its default, which
component reads it and what it means. `Settings.from_env()` checks every variable a component reads and
reports all bad ones together, one line each; `exit_on_bad_settings()` turns that into the start-up
failure of the function and the job (those lines on stderr, exit status 2, no traceback).
`read_setting()` reads one declared variable, for module-level constants (function/serving/logs.py reads
its flush settings so; function/main.py validates before it imports the serving code, so they are valid).
`markdown_table()` renders the README's settings table: `python -m shared.settings` prints it.

Read elsewhere, and listed in the table only: STORAGE_EMULATOR_HOST, the google-cloud-storage client's
own convention (shared/store.py also looks at it to use anonymous credentials). Functions Framework reads
WORKERS and THREADS itself when it builds its gunicorn server, which it does after importing
function/main.py; main.py validates them here first, so a bad value stops start-up with our one line.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from shared.spec import SPECS_DIR, default_model, spec_names

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_STORE = REPO_ROOT / "local_bucket"

SPECS = spec_names()  # the models with a spec in the repository (specs/<name>/spec.toml)
DEFAULT_MODEL = default_model()

FUNCTION, JOB = "function", "job"
BOTH = (FUNCTION, JOB)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class SettingError(ValueError):
    """One or more environment variables hold values their settings do not accept; one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class Kind(Protocol):
    """How one type of setting is parsed: `parse` raises ValueError for a value outside `accepts`."""

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""

    def parse(self, raw: str) -> Any:
        """The typed value of a raw environment string."""


@dataclass(frozen=True)
class Text:
    """Free text, optionally matching a pattern; `optional` makes an empty value mean unset (None)."""

    accepts: str = "any text"
    pattern: str | None = None
    optional: bool = False

    def parse(self, raw: str) -> str | None:
        """The text itself (None when optional and empty)."""
        if self.optional and not raw.strip():
            return None
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise ValueError(raw)
        return raw


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    low = f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else ""
    high = f"{'<' if hi_open else '<='} {hi:g}" if hi is not None else ""
    if low and high and not lo_open and not hi_open:
        return f" from {lo:g} to {hi:g}"
    return " " + " and ".join(part for part in (low, high) if part) if low or high else ""


def _check_bounds(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> None:
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ValueError(value)
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise ValueError(value)


@dataclass(frozen=True)
class Integer:
    """A whole number within bounds."""

    lo: int | None = None
    hi: int | None = None

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""
        return "an integer" + _bounds(self.lo, self.hi, False, False)

    def parse(self, raw: str) -> int:
        """The integer, bounds checked."""
        value = int(raw.strip())
        _check_bounds(value, self.lo, self.hi, False, False)
        return value


@dataclass(frozen=True)
class Number:
    """A finite decimal number within bounds (each bound inclusive unless marked open)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""
        return "a number" + _bounds(self.lo, self.hi, self.lo_open, self.hi_open)

    def parse(self, raw: str) -> float:
        """The number, bounds checked; NaN and infinities are rejected."""
        value = float(raw.strip())
        if not math.isfinite(value):
            raise ValueError(raw)
        _check_bounds(value, self.lo, self.hi, self.lo_open, self.hi_open)
        return value


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Boolean:
    """A switch in any of the usual spellings."""

    accepts: str = "1/0, true/false, yes/no or on/off (any case)"

    def parse(self, raw: str) -> bool:
        """True or False; anything else is rejected, never read as False."""
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(raw)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words, any case; parsed to the upper-case spelling."""

    values: tuple[str, ...]

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""
        return f"one of {', '.join(self.values)} (any case)"

    def parse(self, raw: str) -> str:
        """The canonical (upper-case) word."""
        word = raw.strip().upper()
        if word not in self.values:
            raise ValueError(raw)
        return word


@dataclass(frozen=True)
class ModelNames:
    """Comma-separated names of models with a spec in the repository (one name if `single`)."""

    single: bool = False

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""
        return ("one of " if self.single else "comma-separated names among ") + ", ".join(SPECS)

    def parse(self, raw: str) -> str | tuple[str, ...]:
        """The name, or the names in the order given; unknown or repeated names are rejected."""
        names = tuple(n.strip() for n in raw.split(","))
        if not names or any(n not in SPECS for n in names) or len(set(names)) != len(names) or \
                (self.single and len(names) != 1):
            raise ValueError(raw)
        return names[0] if self.single else names


# a Cloud Storage bucket name: lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class StoreUri:
    """Where bundles live: `gs://bucket[/prefix]` with a valid bucket name, or a local directory."""

    accepts: str = "a local directory, or gs://BUCKET[/PREFIX] with a bucket name of 3-63 characters a-z 0-9 - _ ."

    def parse(self, raw: str) -> str:
        """The URI as given; other schemes (s3://, GS://...) and an empty value are rejected."""
        if raw.startswith("gs://"):
            bucket = raw.removeprefix("gs://").partition("/")[0]
            if not _BUCKET.fullmatch(bucket) or ".." in bucket:
                raise ValueError(raw)
            return raw
        if not raw.strip() or _SCHEME.match(raw):
            raise ValueError(raw)
        return raw


@dataclass(frozen=True)
class Directory:
    """An existing directory."""

    accepts: str = "an existing directory"

    def parse(self, raw: str) -> str:
        """The path as given, if it names a directory."""
        if not raw.strip() or not Path(raw).is_dir():
            raise ValueError(raw)
        return raw


@dataclass(frozen=True)
class Secret:
    """Text that is never echoed: a bad value's error line and the settings' repr leave it out."""

    min_chars: int = 32

    @property
    def accepts(self) -> str:
        """What the table and the error lines say it accepts."""
        return f"a secret of at least {self.min_chars} characters (empty: unset)"

    def parse(self, raw: str) -> str | None:
        """The secret itself (None when empty)."""
        if not raw.strip():
            return None
        if len(raw.strip()) < self.min_chars:
            raise ValueError("too short")
        return raw.strip()


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it accepts, who reads it, what it means, its default as documented."""

    env: str
    kind: Kind
    read_by: tuple[str, ...]
    meaning: str
    shown: str | None = None  # the default as the table shows it, when the value is machine-specific or computed
    reader_note: str = ""  # who actually parses it, when that is a library


def _setting(env: str, kind: Kind, default: Any, read_by: str | tuple[str, ...], meaning: str, *,
             shown: str | None = None) -> Any:
    readers = (read_by,) if isinstance(read_by, str) else read_by
    return field(default=default, repr=not isinstance(kind, Secret),
                 metadata={"setting": Setting(env, kind, readers, meaning, shown)})


_NAME = Text("letters, digits, '.', '_' or '-' (at least one)", r"[A-Za-z0-9._-]+")
_OPTIONAL = Text("any text (empty: unset)", optional=True)


@dataclass(frozen=True)
class Settings:
    """Every setting of the function and the job, typed; each field's metadata holds its Setting."""

    # read by both
    model_store: str = _setting("MODEL_STORE", StoreUri(), str(DEFAULT_LOCAL_STORE), BOTH,
                                "where bundles live: a local directory, or gs://bucket/prefix", shown="./local_bucket")
    specs_dir: str = _setting("SPECS_DIR", Directory(), str(SPECS_DIR), BOTH,
                              "where model specs live, one folder each (`make init` writes there); read first, by "
                              "shared/spec.py, since the models below are those with a spec in it",
                              shown="specs/ of the repository")
    model_name: str = _setting("MODEL_NAME", ModelNames(single=True), DEFAULT_MODEL, BOTH,
                               "the job's model (`--model`); the tools' default model", shown="the spec marked default")
    models: tuple[str, ...] = _setting("MODELS", ModelNames(), SPECS, FUNCTION,
                                       "the models the function serves, each loaded on its first request",
                                       shown="every spec in specs/")
    default_model: str = _setting("DEFAULT_MODEL", ModelNames(single=True), DEFAULT_MODEL, FUNCTION,
                                  "the model of `POST /predict` (without a model name); one of MODELS (else the first)",
                                  shown="the spec marked default")
    log_prefix: str = _setting("LOG_PREFIX", Text(), "logs", BOTH,
                               "where prediction log lines are in the store (empty: the bucket root, as the "
                               "Cloud Logging sink writes on GCP)")
    log_engine: str = _setting("LOG_ENGINE", Choice(("DUCKDB", "BIGQUERY")), "DUCKDB", JOB,
                               "where the job queries the logs: DuckDB over the sink's files in the store, or the "
                               "BigQuery table a Cloud Logging sink fills (`LOG_TABLE`)")
    log_table: str | None = _setting("LOG_TABLE", _OPTIONAL, None, JOB,
                                     "the BigQuery sink table, `project.dataset.run_googleapis_com_stdout` "
                                     "(with `LOG_ENGINE=BIGQUERY`)")
    log_hash_key: str | None = _setting("LOG_HASH_KEY", Secret(), None, BOTH,
                                        "the key fields with `log = \"hash\"` are logged with (HMAC-SHA256); on GCP "
                                        "a Secret Manager secret (terraform/README.md); never in the repository")
    log_hash_key_file: str | None = _setting("LOG_HASH_KEY_FILE", _OPTIONAL, None, BOTH,
                                             "a file holding that key, when `LOG_HASH_KEY` is unset (a mounted "
                                             "secret); with a local store, generated there on first use",
                                             shown="unset: `_secrets/log-hash-key` under a local `MODEL_STORE`")
    log_level: str = _setting("LOG_LEVEL", Choice(LOG_LEVELS), "INFO", BOTH,
                              "the least severe Python log records written to stderr")
    # the function
    pointer_ttl_s: float = _setting("POINTER_TTL_S", Number(0), 30.0, FUNCTION,
                                    "how often (at most) the function re-reads `serving.json`; a promotion is "
                                    "live within this")
    storage_timeout_s: float = _setting("STORAGE_TIMEOUT_S", Number(0, lo_open=True), 5.0, FUNCTION,
                                        "per-call timeout (with retries inside it) for Cloud Storage")
    storage_retry_max_s: float = _setting("STORAGE_RETRY_MAX_S", Number(0), 30.0, FUNCTION,
                                          "ceiling of the exponential backoff between store retries after a failure")
    max_batch_rows: int = _setting("MAX_BATCH_ROWS", Integer(1), 10_000, FUNCTION, "largest batch; more is a 413")
    max_body_bytes: int = _setting("MAX_BODY_BYTES", Integer(1), 8 * 1024 * 1024, FUNCTION,
                                   "largest body; more is a 413 before it is read")
    max_explain_rows: int = _setting("MAX_EXPLAIN_ROWS", Integer(1), 1000, FUNCTION,
                                     "largest batch explained in one request (`:explain`, `parameters.explain`); "
                                     "more is a 413 naming this setting, before any model work")
    explain_concurrency: int = _setting("EXPLAIN_CONCURRENCY", Integer(1), 2, FUNCTION,
                                        "explanations computed at once per worker; a request that finds no slot "
                                        "within 0.5 s is a 503 with `Retry-After`, so explanations cannot take "
                                        "every thread from predictions and `/health`")
    fast_predictor_max_rows: int = _setting("FAST_PREDICTOR_MAX_ROWS", Integer(0), 64, FUNCTION,
                                            "batches up to this size use the verified tree evaluators (no XGBoost "
                                            "import), larger ones XGBoost; at `MAX_BATCH_ROWS` XGBoost never loads")
    shipped_model_dir: str | None = _setting("SHIPPED_MODEL_DIR", _OPTIONAL, None, FUNCTION,
                                             "the last-resort model deployed with the code",
                                             shown="function/shipped_model")
    log_to_store: bool = _setting("LOG_TO_STORE", Boolean(), False, FUNCTION,
                                  "also append prediction log lines to a *local* store, in the Cloud Logging sink "
                                  "layout, for the drift report (`make serve` turns it on)")
    log_flush_interval_s: float = _setting("LOG_FLUSH_INTERVAL_S", Number(0, lo_open=True), 0.2, FUNCTION,
                                           "how long a request's log line may wait in memory for the background "
                                           "writer (what a killed worker can lose)")
    log_flush_bytes: int = _setting("LOG_FLUSH_BYTES", Integer(1), 64 * 1024, FUNCTION,
                                    "buffered log bytes that wake the background writer at once")
    workers: int = _setting("WORKERS", Integer(1), 1, FUNCTION,
                            "gunicorn worker processes (Functions Framework reads it; checked here first)")
    threads: int | None = _setting("THREADS", Integer(1), None, FUNCTION,
                                   "threads per gunicorn worker (Functions Framework reads it; checked here first)",
                                   shown="unset: Functions Framework's, 4 per CPU")
    shadow_queue: int = _setting("SHADOW_QUEUE", Integer(1), 4096, FUNCTION,
                                 "requests a worker keeps waiting for the shadow version to score them, off the "
                                 "request path; beyond it shadow work is dropped (counted in `/health`)")
    tracing: bool = _setting("TRACING", Boolean(), False, FUNCTION,
                             "OpenTelemetry spans per request stage, exported to Cloud Trace (install the `tracing` "
                             "extra); off: OpenTelemetry is never imported")
    # the job
    data_prefix: str = _setting("DATA_PREFIX", Text(), "data/labelled/", JOB,
                                "where new labelled CSV files are read from (`--data-prefix`)")
    log_days: int = _setting("LOG_DAYS", Integer(1), 7, JOB,
                             "days of serving traffic the drift report reads (`--log-days`)")
    feedback_days: int | None = _setting("FEEDBACK_DAYS", Integer(0), None, JOB,
                                         "days of `POST /feedback` a retraining run learns from, joined to its "
                                         "predictions (0: none; `--feedback-days`)", shown="unset: LOG_DAYS")
    canary_percent: float = _setting("CANARY_PERCENT", Number(0, 100, hi_open=True), 0.0, JOB,
                                     "publish as a model canary taking this share of traffic; 0: straight to stable "
                                     "(`--canary-percent`)")
    shadow: bool = _setting("SHADOW", Boolean(), False, JOB,
                            "publish a candidate that passes the gate as the shadow, scored beside stable on live "
                            "requests but never answering, instead of as stable or canary (`--shadow`)")
    shadow_if_close: bool = _setting("SHADOW_IF_CLOSE", Boolean(), False, JOB,
                                     "publish a candidate the gate rejects but finds close (within `CLOSE_FACTOR` "
                                     "times every tolerance against stable, retrain_job/train/gate.py) as the "
                                     "shadow (`--shadow-if-close`)")
    shadow_percent: float = _setting("SHADOW_PERCENT", Number(0, 100, lo_open=True), 100.0, JOB,
                                     "share of requests a published shadow scores (`--shadow-percent`)")
    dry_run: bool = _setting("DRY_RUN", Boolean(), False, JOB, "train, gate and report; publish nothing (`--dry-run`)")
    tol_accuracy: float | None = _setting("TOL_ACCURACY", Number(0), None, JOB,
                                          "how much lower than stable's a classifier's accuracy may be "
                                          "(`--tol-accuracy`)", shown="unset: the spec's [gate]")
    tol_macro_f1: float | None = _setting("TOL_MACRO_F1", Number(0), None, JOB,
                                          "how much lower than stable's a classifier's macro F1 may be "
                                          "(`--tol-macro-f1`)", shown="unset: the spec's [gate]")
    tol_log_loss: float | None = _setting("TOL_LOG_LOSS", Number(0), None, JOB,
                                          "how much higher than stable's a classifier's log loss may be "
                                          "(`--tol-log-loss`)", shown="unset: the spec's [gate]")
    tol_rmse: float | None = _setting("TOL_RMSE", Number(0), None, JOB,
                                      "how much higher than stable's a regressor's RMSE (first regime) may be "
                                      "(`--tol-rmse`)", shown="unset: the spec's [gate]")
    drift_share: float = _setting("DRIFT_SHARE", Number(0, 1), 0.5, JOB,
                                  "share of drifting features at which the data set drifts (`--drift-share`)")
    drift_min_rows: int = _setting("DRIFT_MIN_ROWS", Integer(1), 30, JOB,
                                   "current rows below which the drift report gives no verdict (`--drift-min-rows`)")
    min_labelled_for_review: int = _setting("MIN_LABELLED_FOR_REVIEW", Integer(0), 30, JOB,
                                            "new labelled rows that turn drift into a promotion review "
                                            "(`--min-labelled-for-review`)")
    monitor_feedback_hours: float = _setting("MONITOR_FEEDBACK_HOURS", Number(0, lo_open=True), 24.0, JOB,
                                             "hours of feedback (`POST /feedback`) one monitor run joins to its "
                                             "predictions (`--feedback-hours`)")
    monitor_prediction_days: float = _setting("MONITOR_PREDICTION_DAYS", Number(0), 7.0, JOB,
                                              "days before the feedback window a prediction may have been served "
                                              "and still be joined (`--prediction-days`)")
    monitor_min_labels: int = _setting("MONITOR_MIN_LABELS", Integer(1), 30, JOB,
                                       "labelled rows a version needs for a verdict, its realised `live_*` metrics "
                                       "and a canary decision (`--min-labels`)")
    task_index: int = _setting("CLOUD_RUN_TASK_INDEX", Integer(0), 0, JOB,
                               "this task's index in the execution, below the task count (set by Cloud Run Jobs)")
    task_count: int = _setting("CLOUD_RUN_TASK_COUNT", Integer(1), 1, JOB,
                               "tasks in the execution (set by Cloud Run Jobs)")
    execution: str | None = _setting("CLOUD_RUN_EXECUTION", _OPTIONAL, None, JOB,
                                     "the execution's name, the run id its tasks share (set by Cloud Run Jobs)",
                                     shown="unset: a random id")
    job_name: str = _setting("CLOUD_RUN_JOB", Text(), "local", JOB,
                             "the job's name, a label of its metrics (set by Cloud Run Jobs)")
    metrics_project: str | None = _setting("METRICS_PROJECT", _OPTIONAL, None, JOB,
                                           "Cloud Monitoring project of the job's metrics (neither this nor "
                                           "`GOOGLE_CLOUD_PROJECT`: they are logged)")
    google_cloud_project: str | None = _setting("GOOGLE_CLOUD_PROJECT", _OPTIONAL, None, BOTH,
                                                "the project of the function's trace ids in its log lines, and "
                                                "the job's metrics' project when `METRICS_PROJECT` is unset",
                                                shown="unset (trace ids: project `local`)")
    metrics_endpoint: str | None = _setting("METRICS_ENDPOINT", _OPTIONAL, None, JOB,
                                            "a plain-gRPC Cloud Monitoring `host:port` instead of Google's (tests)")
    cloud_run_region: str | None = _setting("CLOUD_RUN_REGION", _OPTIONAL, None, JOB, "the metrics' location")
    region: str | None = _setting("REGION", _OPTIONAL, None, JOB,
                                  "the metrics' location when `CLOUD_RUN_REGION` is unset (neither: `global`)")
    # not an environment setting: the request header carrying a client's canary key
    canary_header: str = "x-request-key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, *, reader: str | None = None) -> Settings:
        """The settings `reader` ("function", "job"; None: all) reads; SettingError names every bad one."""
        if reader not in (None, *BOTH):
            raise ValueError(f"unknown reader {reader!r}")
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            s: Setting | None = f.metadata.get("setting")
            if s is None or s.env not in environ or (reader is not None and reader not in s.read_by):
                continue
            raw = environ[s.env]
            try:
                values[f.name] = s.kind.parse(raw)
            except ValueError:
                problems.append(f"{s.env}={_shown_value(s, raw)}: expected {s.kind.accepts}")
        count_ok = "task_count" in values or "CLOUD_RUN_TASK_COUNT" not in environ
        if "task_index" in values and count_ok and values["task_index"] >= values.get("task_count", 1):
            problems.append(f"CLOUD_RUN_TASK_INDEX={_quoted(environ['CLOUD_RUN_TASK_INDEX'])}: expected an integer "
                            f"below CLOUD_RUN_TASK_COUNT ({values.get('task_count', 1)})")
        if values.get("log_engine") == "BIGQUERY" and not values.get("log_table"):
            problems.append(f"LOG_ENGINE={_quoted(environ['LOG_ENGINE'])}: needs LOG_TABLE, the BigQuery sink table "
                            "(project.dataset.run_googleapis_com_stdout)")
        models = values.get("models", SPECS)
        if "default_model" in values and values["default_model"] not in models:
            problems.append(f"DEFAULT_MODEL={_quoted(environ['DEFAULT_MODEL'])}: expected one of MODELS "
                            f"({', '.join(models)})")
        elif "default_model" not in values and DEFAULT_MODEL not in models and models:
            values["default_model"] = models[0]  # the spec's default is not served: the first served model
        if problems:
            raise SettingError(problems)
        return cls(**values)

    @property
    def location(self) -> str:
        """The job's location label: CLOUD_RUN_REGION, else REGION, else global."""
        return self.cloud_run_region or self.region or "global"


def read_setting(env: str, environ: Mapping[str, str] = os.environ) -> Any:
    """One declared variable's value (its default when unset), for module-level constants; SettingError if bad."""
    for f in fields(Settings):
        s: Setting | None = f.metadata.get("setting")
        if s is not None and s.env == env:
            if env not in environ:
                return f.default
            try:
                return s.kind.parse(environ[env])
            except ValueError:
                raise SettingError([f"{env}={_shown_value(s, environ[env])}: expected {s.kind.accepts}"]) from None
    raise KeyError(f"{env} is not declared in shared/settings.py")


def _shown_value(s: Setting, raw: str) -> str:
    return "(hidden)" if isinstance(s.kind, Secret) else _quoted(raw)


def _quoted(raw: str, limit: int = 60) -> str:
    return repr(raw) if len(raw) <= limit else repr(raw[:limit]) + "..."


# Read by a library, not by our code; documented in the table beside ours.
LIBRARY_SETTINGS = (
    Setting("STORAGE_EMULATOR_HOST", Text("an http://host:port address"), BOTH,
            "the Cloud Storage emulator to use instead of Google's (tests set it)", shown="unset",
            reader_note="google-cloud-storage"),
)


def declared() -> list[tuple[Setting, Any]]:
    """Every documented setting with its default: ours in declaration order, then those libraries read."""
    ours = [(f.metadata["setting"], f.default) for f in fields(Settings) if "setting" in f.metadata]
    return ours + [(s, None) for s in LIBRARY_SETTINGS]


def _shown_default(s: Setting, default: Any) -> str:
    if s.shown is not None:
        return s.shown if s.shown.startswith("unset") else f"`{s.shown}`"
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`" if default != "" else "empty"


def markdown_table(reader: str | None = None) -> str:
    """The docs' settings table of what `reader` reads (None: all): variable, read by, default, accepts, meaning."""
    lines = ["| variable | read by | default | accepts | meaning |", "|---|---|---|---|---|"]
    for s, default in declared():
        if reader is not None and reader not in s.read_by:
            continue
        read_by = ", ".join(s.read_by) + (f" (through {s.reader_note})" if s.reader_note else "")
        lines.append(f"| `{s.env}` | {read_by} | {_shown_default(s, default)} | {s.kind.accepts} | {s.meaning} |")
    return "\n".join(lines)


def exit_on_bad_settings(prog: str, reader: str, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings `reader` reads; if any is bad, one line per bad variable on stderr and exit status 2."""
    try:
        return Settings.from_env(environ, reader=reader)
    except SettingError as exc:
        exit_on_setting_error(prog, exc)


def exit_on_setting_error(prog: str, exc: SettingError) -> None:
    """One line per problem on stderr, then exit status 2 (no traceback)."""
    sys.stderr.write("".join(f"{prog}: bad setting {line}\n" for line in exc.problems))
    sys.stderr.flush()
    raise SystemExit(2) from None


def configure_logging(level: str, structured: bool = False) -> None:
    """Write log records of `level` and above to stderr (a handler is added only if the root has none).

    `structured` (the function): every record is one JSON line Cloud Logging parses (`severity`, `message`,
    `logger`, and a `stack_trace` field holding any exception's trace), on the root's stream handlers whoever
    added them; warnings (numpy's RuntimeWarnings among them) and exceptions that escape a thread are logged
    through it, so no raw traceback or warning text reaches the log.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    if structured:
        for handler in root.handlers:
            if type(handler) is logging.StreamHandler:  # ours or Functions Framework's; not a test harness's
                handler.setFormatter(JsonFormatter())
        logging.captureWarnings(False)  # then True: captures again if something replaced showwarning since
        logging.captureWarnings(True)
        threading.excepthook = _log_thread_exception
        sys.excepthook = _log_uncaught_exception


class JsonFormatter(logging.Formatter):
    """One JSON line per record, in the shape Cloud Logging parses from a container's output."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["stack_trace"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("threading").error("uncaught exception in thread %s", name,
                                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_uncaught_exception(exc_type, exc_value, exc_traceback) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))


if __name__ == "__main__":  # python -m shared.settings [function|job]: the table the docs paste
    print(markdown_table(sys.argv[1] if len(sys.argv) > 1 else None))
