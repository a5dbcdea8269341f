"""`python -m retrain_job` and its settings: a bad one stops it with one line and exit 2; flags override the rest."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from retrain_job.__main__ import parse_args
from retrain_job.drift.stats import DriftThresholds
from retrain_job.metrics import MetricsTarget
from retrain_job.train.gate import Tolerances
from retrain_job.train.run import JobOptions
from retrain_job.train.tasks import Task
from shared.settings import JOB, SettingError, Settings
from testbed.servers import REPO


def run_module(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain_job", *args], cwd=REPO, check=False, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)


@pytest.mark.parametrize("name, value, accepts", [
    ("DRY_RUN", "maybe", "1/0, true/false, yes/no or on/off (any case)"),
    ("LOG_DAYS", "x", "an integer >= 1"),
    ("CANARY_PERCENT", "150", "a number >= 0 and < 100"),
    ("MODEL_STORE", "gs://Bad!", "gs://BUCKET[/PREFIX]"),
])
def test_a_bad_setting_stops_the_job_with_one_line(tmp_path, name, value, accepts):
    proc = run_module("--store", str(tmp_path / "store"), env={name: value}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"python -m retrain_job: bad setting {name}={value!r}: expected ")
    assert accepts in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()  # nothing was done


def test_settings_the_job_does_not_read_do_not_stop_it(tmp_path):
    proc = run_module("rollback", "--store", str(tmp_path / "store"), env={"WORKERS": "abc", "MAX_BATCH_ROWS": "0"},
                      timeout=60)
    assert proc.returncode == 1 and '"decision": "failed"' in proc.stdout  # nothing to roll back: the command ran
    assert "bad setting" not in proc.stderr


def test_dry_run_yes_is_accepted_and_log_level_applies(tmp_path):
    store = tmp_path / "store"
    proc = run_module("--store", str(store), env={"DRY_RUN": "yes", "LOG_LEVEL": "warning"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"decision": "dry-run"' in proc.stdout.splitlines()[-1]
    assert not (store / "models").exists()  # nothing published
    assert not [line for line in proc.stderr.splitlines() if line.startswith("INFO ")]  # the metrics' INFO lines


def test_flags_default_to_the_environment_and_override_it():
    env = {"DRY_RUN": "On", "LOG_DAYS": "3", "CANARY_PERCENT": "12.5", "DATA_PREFIX": "new/", "MODEL_STORE": "gs://bucket/p",
           "TOL_ACCURACY": "0.02", "DRIFT_MIN_ROWS": "50", "MIN_LABELLED_FOR_REVIEW": "0", "MODEL_NAME": "co2"}
    settings = Settings.from_env(env, reader=JOB)
    args = parse_args([], settings)
    assert (args.dry_run, args.log_days, args.canary_percent, args.data_prefix, args.store, args.model) == (
        True, 3, 12.5, "new/", "gs://bucket/p", "co2")
    assert (args.tol_accuracy, args.drift_min_rows, args.min_labelled_for_review) == (0.02, 50, 0)
    assert (args.tol_macro_f1, args.tol_log_loss, args.tol_rmse) == (None, None, None)  # unset: the spec's
    args = parse_args(["--log-days", "9", "--canary-percent", "5", "--store", "/x", "--data-prefix", "d/",
                       "--model", "penguins", "--tol-rmse", "2"], settings)
    assert (args.log_days, args.canary_percent, args.store, args.data_prefix) == (9, 5.0, "/x", "d/")
    assert (args.model, args.tol_rmse) == ("penguins", 2.0)


def test_model_flag_knows_the_specs(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--model", "nonesuch"], Settings())
    assert exit_.value.code == 2 and "invalid choice: 'nonesuch'" in capsys.readouterr().err
    assert parse_args([], Settings()).model == "penguins"  # the spec marked default


def test_setting_defaults_agree_with_the_job_defaults():
    s, opts = Settings(), JobOptions()
    assert (s.tol_accuracy, s.tol_macro_f1, s.tol_log_loss, s.tol_rmse) == (
        Tolerances.accuracy, Tolerances.macro_f1, Tolerances.log_loss, Tolerances.rmse) == (None, None, None, None)
    assert (s.drift_share, s.drift_min_rows) == (DriftThresholds.share, DriftThresholds.min_rows)
    assert (s.data_prefix, s.log_prefix, s.log_days, s.canary_percent, s.dry_run, s.min_labelled_for_review) == (
        opts.data_prefix, opts.log_prefix, opts.log_days, opts.canary_percent, opts.dry_run,
        opts.min_labelled_for_review)
    assert s.model_name == opts.model_name


def test_task_and_metrics_target_read_through_the_settings(monkeypatch):
    env = {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3", "CLOUD_RUN_EXECUTION": "exec-7",
           "CLOUD_RUN_JOB": "retrain", "REGION": "europe-west1", "GOOGLE_CLOUD_PROJECT": "proj", "METRICS_ENDPOINT": ""}
    settings = Settings.from_env(env, reader=JOB)
    assert Task.from_env("random", settings) == Task(1, 3, "exec-7")
    assert MetricsTarget.from_env(settings) == MetricsTarget(project="proj", endpoint=None, location="europe-west1",
                                                             job="retrain", task="1", model="penguins")
    for key, value in {**env, "METRICS_PROJECT": "metrics-proj", "CLOUD_RUN_EXECUTION": ""}.items():
        monkeypatch.setenv(key, value)
    assert Task.from_env("random") == Task(1, 3, "random")  # an empty execution name is unset
    assert MetricsTarget.from_env().project == "metrics-proj"
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "zero")
    with pytest.raises(SettingError, match="CLOUD_RUN_TASK_COUNT='zero'"):
        Task.from_env("random")
