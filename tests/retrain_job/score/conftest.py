"""Scoring fixtures: a store serving both models, input files made from their base data, and `score` run as the
command runs it (its summary line parsed)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrain_job.data.labelled import request_fields
from retrain_job.score import cli
from tests.support.bundles import STABLE, publish


@pytest.fixture
def store(local_store, trained_bundle, co2_bundle):
    """A local store whose pointers serve the session's penguin classifier and CO2 regressor."""
    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    return local_store


@pytest.fixture
def penguin_rows(penguins_spec, base_data) -> pd.DataFrame:
    """Request fields of the penguin base data, a missing sex as a null."""
    return base_data[request_fields(penguins_spec)].reset_index(drop=True)


@pytest.fixture
def co2_rows(co2_spec, co2_data) -> pd.DataFrame:
    return co2_data[request_fields(co2_spec)].reset_index(drop=True)


@pytest.fixture
def run_score(monkeypatch, capsys):
    """`retrain_job.score.cli.main` with flags, as task `index` of `count`: (exit code, summary line)."""
    def run(*args: str, index: int = 0, count: int = 1) -> tuple[int, dict]:
        monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", str(index))
        monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", str(count))
        capsys.readouterr()
        code = cli.main(list(args))
        lines = capsys.readouterr().out.strip().splitlines()
        return code, json.loads(lines[-1])
    return run


def write_parquet(frame: pd.DataFrame, path, row_group_size: int | None = None) -> None:
    """A frame as Parquet: pandas' types (a missing value a null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)


def read_output(folder) -> pd.DataFrame:
    """Every part file of an output folder, in task order."""
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def read_errors(folder) -> pd.DataFrame:
    parts = sorted(folder.glob("errors-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def requests_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them: missing values left out, numbers as JSON numbers."""
    out = []
    for record in frame.astype(object).to_dict("records"):
        row = {}
        for k, v in record.items():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            row[k] = v.item() if isinstance(v, np.generic) else v
        out.append(row)
    return out
