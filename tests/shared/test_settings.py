"""The settings module: every type's parser, bad values reported one line each, defaults, and the README table."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from shared import settings as settings_module
from shared.settings import (
    FUNCTION,
    JOB,
    LIBRARY_SETTINGS,
    Boolean,
    Choice,
    Integer,
    Number,
    SettingError,
    Settings,
    StoreUri,
    Text,
    configure_logging,
    declared,
    exit_on_bad_settings,
    markdown_table,
    read_setting,
)
from testbed.servers import REPO

# each doc holds the table of the settings its component reads, under a marker naming the command
DOC_TABLES = {"README.md": "function", "retrain_job/README.md": "job"}


def marker(reader: str) -> str:
    return f"<!-- settings table: python -m shared.settings {reader} -->"


def readme_table(text: str, reader: str = "function") -> list[str] | None:
    """The table lines following the marker line (blank lines between them skipped), or None without a marker."""
    lines = text.splitlines()
    if marker(reader) not in (line.strip() for line in lines):
        return None
    rest = lines[[line.strip() for line in lines].index(marker(reader)) + 1:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    table = []
    for line in rest:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def readme_problem(text: str, reader: str = "function") -> str | None:
    """Why a doc's settings table is not the generated one, or None when it is."""
    table = readme_table(text, reader)
    if table is None:
        return (f"no line {marker(reader)}: paste the output of `python -m shared.settings {reader}` "
                "under such a line in its Settings section")
    if table != markdown_table(reader).splitlines():
        return (f"the table under {marker(reader)} is not the output of `python -m shared.settings {reader}`: "
                "paste it again")
    return None


# --- each type ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "YES", "Yes", "on", "ON", " on ", "yes\n"])
def test_boolean_true_spellings(raw):
    assert Boolean().parse(raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "False", "no", "NO", "No", "off", "OFF", " off "])
def test_boolean_false_spellings(raw):
    assert Boolean().parse(raw) is False


@pytest.mark.parametrize("raw", ["maybe", "", "2", "y", "n", "t", "enabled", "-1", "1.0"])
def test_boolean_rejects_anything_else(raw):
    with pytest.raises(ValueError):
        Boolean().parse(raw)


def test_integer_bounds_and_syntax():
    kind = Integer(1)
    assert kind.parse("1") == 1 and kind.parse(" 42 ") == 42 and kind.accepts == "an integer >= 1"
    for raw in ("0", "-3", "abc", "", "1.5", "1e3", "two"):
        with pytest.raises(ValueError):
            kind.parse(raw)
    bounded = Integer(0, 100)
    assert bounded.accepts == "an integer from 0 to 100" and bounded.parse("100") == 100
    with pytest.raises(ValueError):
        bounded.parse("101")


def test_number_bounds_open_and_closed():
    percent = Number(0, 100, hi_open=True)
    assert percent.accepts == "a number >= 0 and < 100"
    assert percent.parse("0") == 0.0 and percent.parse("99.5") == 99.5
    for raw in ("100", "150", "-1", "x", "", "nan", "inf", "-inf"):
        with pytest.raises(ValueError):
            percent.parse(raw)
    positive = Number(0, lo_open=True)
    assert positive.accepts == "a number > 0" and positive.parse("0.5") == 0.5
    with pytest.raises(ValueError):
        positive.parse("0")
    assert Number(0, 1).accepts == "a number from 0 to 1" and Number(0, 1).parse("1") == 1.0


def test_choice_any_case_to_canonical():
    kind = Choice(("DEBUG", "INFO", "WARNING"))
    assert kind.parse("debug") == "DEBUG" and kind.parse(" Warning ") == "WARNING"
    assert kind.accepts == "one of DEBUG, INFO, WARNING (any case)"
    for raw in ("LOUD", "", "WARN", "10"):
        with pytest.raises(ValueError):
            kind.parse(raw)


@pytest.mark.parametrize("raw", ["gs://bucket", "gs://my-bucket/prefix", "gs://a.b_c-1/deep/prefix/", "gs://abc/",
                                 "gs://" + "b" * 63, "/tmp/store", "./local_bucket", "relative/dir", "C:dir"])
def test_store_uri_accepts(raw):
    assert StoreUri().parse(raw) == raw


@pytest.mark.parametrize("raw", ["gs://", "gs:///prefix", "gs://Bad_Bucket!", "gs://Bad!", "gs://UPPER", "gs://ab",
                                 "gs://" + "b" * 64, "gs://-bucket", "gs://bucket-", "gs://a..b", "gs://bu cket/x",
                                 "s3://bucket/prefix", "GS://bucket", "gcs://bucket", "https://storage/x", "", "  "])
def test_store_uri_rejects(raw):
    with pytest.raises(ValueError):
        StoreUri().parse(raw)


def test_text_optional_and_pattern():
    assert Text().parse("") == "" and Text().parse("any thing") == "any thing"
    optional = Text(optional=True)
    assert optional.parse("") is None and optional.parse("  ") is None and optional.parse("p") == "p"
    name = Text(pattern=r"[a-z]+")
    assert name.parse("abc") == "abc"
    with pytest.raises(ValueError):
        name.parse("a/b")


# --- Settings.from_env ---------------------------------------------------------------------------------------

def test_defaults_when_nothing_is_set():
    assert Settings.from_env({}) == Settings()
    s = Settings()
    assert (s.model_store, s.model_name, s.log_level, s.log_to_store, s.dry_run) == (
        str(settings_module.DEFAULT_LOCAL_STORE), "penguins", "INFO", False, False)
    assert (s.workers, s.threads, s.max_batch_rows, s.canary_percent, s.task_index, s.task_count) == (
        1, None, 10_000, 0.0, 0, 1)


def test_values_are_typed():
    env = {"MODEL_STORE": "gs://bucket/p", "POINTER_TTL_S": "2.5", "MAX_BATCH_ROWS": "500", "LOG_TO_STORE": "Yes",
           "LOG_LEVEL": "debug", "WORKERS": "4", "THREADS": "2", "DRY_RUN": "on", "CANARY_PERCENT": "10",
           "LOG_PREFIX": "", "SHIPPED_MODEL_DIR": "", "CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "3",
           "CLOUD_RUN_EXECUTION": "exec-1", "REGION": "europe-west1"}
    s = Settings.from_env(env)
    assert (s.model_store, s.pointer_ttl_s, s.max_batch_rows, s.log_to_store, s.log_level) == (
        "gs://bucket/p", 2.5, 500, True, "DEBUG")
    assert (s.workers, s.threads, s.dry_run, s.canary_percent, s.log_prefix, s.shipped_model_dir) == (
        4, 2, True, 10.0, "", None)
    assert (s.task_index, s.task_count, s.execution, s.location) == (2, 3, "exec-1", "europe-west1")
    assert Settings.from_env({"CLOUD_RUN_REGION": "us-central1", "REGION": "x"}).location == "us-central1"
    assert Settings.from_env({"CLOUD_RUN_REGION": ""}).location == "global"


def test_every_bad_setting_is_reported_one_line_each():
    env = {"WORKERS": "abc", "MODEL_STORE": "gs://", "LOG_LEVEL": "LOUD", "MAX_BATCH_ROWS": "0", "DRY_RUN": "maybe",
           "LOG_DAYS": "x", "CANARY_PERCENT": "150", "POINTER_TTL_S": "-1", "THREADS": "", "MODEL_NAME": "a/b"}
    with pytest.raises(SettingError) as caught:
        Settings.from_env(env)
    lines = str(caught.value).splitlines()
    assert lines == list(caught.value.problems) and len(lines) == len(env)
    for name, value in env.items():
        line = next(line for line in lines if line.startswith(f"{name}="))
        assert line.startswith(f"{name}={value!r}: expected ")
    assert "WORKERS='abc': expected an integer >= 1" in lines
    assert "LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)" in lines
    assert "DRY_RUN='maybe': expected 1/0, true/false, yes/no or on/off (any case)" in lines
    assert "CANARY_PERCENT='150': expected a number >= 0 and < 100" in lines
    assert next(line for line in lines if line.startswith("MODEL_STORE=")).endswith(StoreUri().accepts)


def test_a_long_bad_value_is_shortened_and_stays_on_one_line():
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"WORKERS": "x\n" * 500})
    (line,) = caught.value.problems
    assert "\n" not in line and len(line) < 150 and line.startswith("WORKERS='x\\nx")


def test_each_component_reads_only_its_settings():
    job_only, function_only = {"DRY_RUN": "maybe", "LOG_DAYS": "x"}, {"WORKERS": "abc", "MAX_BATCH_ROWS": "0"}
    assert Settings.from_env(job_only, reader=FUNCTION) == Settings()
    assert Settings.from_env(function_only, reader=JOB) == Settings()
    for reader in (FUNCTION, JOB):
        with pytest.raises(SettingError, match="LOG_LEVEL="):
            Settings.from_env({"LOG_LEVEL": "LOUD"}, reader=reader)  # read by both
    with pytest.raises(ValueError, match="reader"):
        Settings.from_env({}, reader="cron")


def test_task_index_must_be_below_the_count():
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "3"})
    assert caught.value.problems == ("CLOUD_RUN_TASK_INDEX='3': expected an integer below CLOUD_RUN_TASK_COUNT (3)",)
    with pytest.raises(SettingError) as caught:  # a bad count is reported alone, not as a second complaint
        Settings.from_env({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "0"})
    assert [line.split("=")[0] for line in caught.value.problems] == ["CLOUD_RUN_TASK_COUNT"]


def test_read_setting_reads_one_declared_variable():
    assert read_setting("LOG_FLUSH_BYTES", {}) == 64 * 1024
    assert read_setting("LOG_FLUSH_INTERVAL_S", {"LOG_FLUSH_INTERVAL_S": "0.05"}) == 0.05
    assert read_setting("DRY_RUN", {"DRY_RUN": "Yes"}) is True
    with pytest.raises(SettingError, match=r"^LOG_FLUSH_BYTES='0': expected an integer >= 1$"):
        read_setting("LOG_FLUSH_BYTES", {"LOG_FLUSH_BYTES": "0"})
    with pytest.raises(KeyError):
        read_setting("NOT_DECLARED", {})


def test_exit_on_bad_settings_prints_one_line_per_variable_and_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        exit_on_bad_settings("prog", FUNCTION, {"WORKERS": "abc", "LOG_LEVEL": "LOUD"})
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["prog: bad setting LOG_LEVEL='LOUD': expected " + Choice(settings_module.LOG_LEVELS).accepts,
                   "prog: bad setting WORKERS='abc': expected an integer >= 1"]
    assert exit_on_bad_settings("prog", JOB, {"WORKERS": "abc"}) == Settings()


def test_configure_logging_applies_the_level():
    root = logging.getLogger()
    before = root.level
    try:
        configure_logging("ERROR")
        assert root.level == logging.ERROR and root.handlers
        configure_logging("DEBUG")
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


def test_structured_logging_writes_one_json_line_per_record_warning_and_thread_error():
    """The function's logging: records, their tracebacks, warnings (numpy's RuntimeWarnings among them) and
    exceptions escaping a thread all become one JSON line each, never raw traceback or warning text."""
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    root = logging.getLogger()
    saved = root.level, list(root.handlers), [h.formatter for h in root.handlers], threading.excepthook, sys.excepthook
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.handlers[:] = [handler]
    try:
        configure_logging("INFO", structured=True)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("x").exception("failed\nover lines")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
    finally:
        logging.captureWarnings(False)
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for h, f in zip(saved[1], saved[2], strict=True):
            h.setFormatter(f)
        threading.excepthook, sys.excepthook = saved[3], saved[4]
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["severity"] for e in entries] == ["ERROR", "WARNING", "ERROR"], entries
    assert entries[0]["message"] == "failed\nover lines" and "ValueError: boom" in entries[0]["stack_trace"]
    assert entries[1]["logger"] == "py.warnings" and "RuntimeWarning" in entries[1]["message"]
    assert "ZeroDivisionError" in entries[2]["stack_trace"]


def test_explanation_bounds_are_settings():
    assert Settings().max_explain_rows == 1000 and Settings().explain_concurrency == 2
    got = Settings.from_env({"MAX_EXPLAIN_ROWS": "50", "EXPLAIN_CONCURRENCY": "4"}, reader=FUNCTION)
    assert (got.max_explain_rows, got.explain_concurrency) == (50, 4)
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"MAX_EXPLAIN_ROWS": "0", "EXPLAIN_CONCURRENCY": "x"}, reader=FUNCTION)
    assert len(caught.value.problems) == 2


# --- one place ---------------------------------------------------------------------------------------------

def test_every_field_but_the_header_is_an_environment_setting():
    plain = [f.name for f in fields(Settings) if "setting" not in f.metadata]
    assert plain == ["canary_header"]
    names = [s.env for s, _ in declared()]
    assert len(names) == len(set(names))
    for s, _ in declared():
        assert s.read_by and set(s.read_by) <= {FUNCTION, JOB}, s.env
        assert s.meaning and "\n" not in s.meaning, s.env


def test_no_code_reads_the_environment_outside_the_settings_module():
    library = {("shared/store.py", "STORAGE_EMULATOR_HOST")}  # the client library's own convention, documented
    assert {s.env for s in LIBRARY_SETTINGS} == {name for _, name in library}
    # the specs folder is read before the settings exist: they list the models with a spec in it (and check it)
    allowed = {*library, ("shared/spec.py", "SPECS_DIR")}
    reads = []
    for package in ("function", "shared", "retrain_job", "scripts"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "shared/settings.py" or "shipped_model" in rel:
                continue
            for line in path.read_text().splitlines():
                if re.search(r"\bos\.environ\b|\bgetenv\b|from os import environ", line):
                    name = re.search(r"[\"']([A-Z_]+)[\"']", line)
                    if (rel, name.group(1) if name else "") not in allowed:
                        reads.append(f"{rel}: {line.strip()}")
    assert not reads, "read these through shared/settings.py:\n" + "\n".join(reads)


# --- the table -----------------------------------------------------------------------------------------------

def test_table_has_one_row_per_setting_and_five_columns():
    lines = markdown_table().splitlines()
    assert lines[0] == "| variable | read by | default | accepts | meaning |" and lines[1] == "|---|---|---|---|---|"
    rows = lines[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{s.env}`" for s, _ in declared()]
    for row in rows:
        assert row.startswith("| ") and row.endswith(" |") and row.count("|") == 6, row  # no stray pipe in a cell
    row = {line.split("`")[1]: line for line in rows}
    assert row["WORKERS"] == ("| `WORKERS` | function | `1` | an integer >= 1 | gunicorn worker processes "
                              "(Functions Framework reads it; checked here first) |")
    assert "| `MODEL_STORE` | function, job | `./local_bucket` |" in row["MODEL_STORE"]
    assert "| `DRY_RUN` | job | `false` | 1/0, true/false, yes/no or on/off (any case) |" in row["DRY_RUN"]
    assert "| `LOG_LEVEL` | function, job | `INFO` |" in row["LOG_LEVEL"]
    assert "through google-cloud-storage" in row["STORAGE_EMULATOR_HOST"]


def test_python_m_shared_settings_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "shared.settings"], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=60).stdout
    assert out == markdown_table() + "\n"


def test_readme_check_on_copies(tmp_path):
    """The README check itself: it passes on a copy holding the table, and fails on a stale or missing one."""
    text = (REPO / "README.md").read_text()
    body = [line for line in text.splitlines() if line.strip() != marker("function")]
    good = tmp_path / "good.md"
    good.write_text("\n".join(["# t", "", "## Settings", marker("function"), "", markdown_table("function"), "",
                               *body]) + "\n")
    assert readme_problem(good.read_text()) is None
    stale = good.read_text().replace("an integer >= 1", "an integer >= 2", 1)
    assert "paste it again" in readme_problem(stale)
    assert "no line" in readme_problem("\n".join(body))
    truncated = good.read_text().replace(markdown_table("function").splitlines()[-1] + "\n", "")
    assert "paste it again" in readme_problem(truncated)


@pytest.mark.parametrize(("doc", "reader"), DOC_TABLES.items())
def test_docs_hold_the_generated_tables(doc, reader):
    problem = readme_problem((REPO / doc).read_text(), reader)
    assert problem is None, f"{doc}: {problem}"


def test_every_setting_is_in_a_doc_table():
    rows = {line.split("|")[1].strip() for reader in DOC_TABLES.values() for line in
            markdown_table(reader).splitlines()[2:]}
    assert rows == {line.split("|")[1].strip() for line in markdown_table().splitlines()[2:]}
