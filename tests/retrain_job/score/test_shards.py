"""Tasks of one scoring run: every row in exactly one shard, a rerun replacing only its own, `_SUCCESS` once
all are in."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from retrain_job.score import outputs
from retrain_job.score.outputs import MANIFEST
from retrain_job.score.sources import Unit, resolve_inputs, shard
from tests.retrain_job.score.conftest import read_errors, read_output, write_parquet


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_every_unit_is_in_exactly_one_shard_and_shards_are_contiguous(count):
    units = [Unit(i // 5, i % 5, 0, 10, weight) for i, weight in enumerate([5, 1, 1, 30, 2, 8, 8, 8, 1, 1, 100, 3])]
    shards = [shard(units, i, count) for i in range(count)]
    assert [u for s in shards for u in s] == units
    assert all(shards[i] == shard(units, i, count) for i in range(count))  # the same on every run


def _inputs(rows: pd.DataFrame, folder) -> pd.DataFrame:
    """Three Parquet files of several row groups, a few rows refused: the rows as the inputs hold them."""
    frame = rows.iloc[:240].astype({"island": object}).reset_index(drop=True)
    frame["key"] = range(len(frame))
    frame.loc[[5, 100, 230], "island"] = "Atlantis"
    for i, part in enumerate((frame.iloc[:90], frame.iloc[90:150], frame.iloc[150:])):
        write_parquet(part, folder / f"part-{i}.parquet", row_group_size=16)
    return frame


def _args(folder, out, store) -> list[str]:
    return ["--model", "penguins", "--input", str(folder), "--output", str(out), "--store", str(store.root),
            "--id-columns", "key"]


def test_a_rerun_task_replaces_its_own_shard_and_the_manifest_waits_for_every_shard(store, penguin_rows, tmp_path,
                                                                                     run_score):
    _inputs(penguin_rows, tmp_path / "in")
    out = tmp_path / "out"
    code, first = run_score(*_args(tmp_path / "in", out, store), index=0, count=2)
    assert code == 0 and first["complete"] is False and not (out / MANIFEST).exists()
    code, second = run_score(*_args(tmp_path / "in", out, store), index=1, count=2)
    assert code == 0 and second["complete"] is True
    manifest = json.loads((out / MANIFEST).read_text())
    assert first["rows_in"] > 0 and second["rows_in"] > 0
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"]) == (240, 237, 3)
    assert manifest["parts"] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    before = read_output(out)
    code, again = run_score(*_args(tmp_path / "in", out, store), index=0, count=2)  # task 0 runs again
    assert code == 0 and again["complete"] is True and again["rows_in"] == first["rows_in"]
    after = read_output(out)
    pd.testing.assert_frame_equal(before, after)
    assert sorted(after["key"]) == sorted(set(range(240)) - {5, 100, 230})  # no row twice, none lost
    assert after["prediction_id"].is_unique
    errors = read_errors(out)
    assert sorted(zip(errors["file"].str.rsplit("/", n=1).str[1], errors["row"])) == [
        ("part-0.parquet", 5), ("part-1.parquet", 10), ("part-2.parquet", 80)]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_shards", "errors-00000-of-00002.parquet",
                                                     "errors-00001-of-00002.parquet", "part-00000-of-00002.parquet",
                                                     "part-00001-of-00002.parquet"]


def test_a_task_that_fails_leaves_no_part_and_its_rerun_completes_the_run(store, penguin_rows, tmp_path, run_score,
                                                                          monkeypatch):
    _inputs(penguin_rows, tmp_path / "in")
    out = tmp_path / "out"
    assert run_score(*_args(tmp_path / "in", out, store), index=0, count=2)[0] == 0
    written = []

    def fail_after_one_chunk(self, table):
        written.append(table.num_rows)
        if len(written) > 1:
            raise OSError("disk gone")
        return real(self, table)

    real = outputs.ShardFiles.write_rows
    monkeypatch.setattr(outputs.ShardFiles, "write_rows", fail_after_one_chunk)
    code, failed = run_score(*_args(tmp_path / "in", out, store), "--chunk-rows", "8", index=1, count=2)
    assert code == 1 and failed["decision"] == "failed" and "disk gone" in failed["error"]
    assert not (out / "part-00001-of-00002.parquet").exists() and not (out / MANIFEST).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    monkeypatch.setattr(outputs.ShardFiles, "write_rows", real)
    code, rerun = run_score(*_args(tmp_path / "in", out, store), index=1, count=2)
    assert code == 0 and rerun["complete"] is True
    assert sorted(read_output(out)["key"]) == sorted(set(range(240)) - {5, 100, 230})


def test_a_run_of_another_plan_takes_the_manifest_down_until_it_is_complete(store, penguin_rows, tmp_path, run_score):
    _inputs(penguin_rows, tmp_path / "in")
    out = tmp_path / "out"
    assert run_score(*_args(tmp_path / "in", out, store))[1]["complete"] is True
    code, summary = run_score(*_args(tmp_path / "in" / "part-0.parquet", out, store), index=0, count=2)
    assert code == 0 and summary["complete"] is False and not (out / MANIFEST).exists()
    code, summary = run_score(*_args(tmp_path / "in" / "part-0.parquet", out, store), index=1, count=2)
    assert summary["complete"] is True
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["inputs"] == [f.uri for f in resolve_inputs(str(tmp_path / "in" / "part-0.parquet"))]
    assert manifest["rows_in"] == 90
    assert sorted(p.name for p in out.glob("*.parquet")) == [  # the one-task run's files are gone
        "errors-00000-of-00002.parquet", "errors-00001-of-00002.parquet", "part-00000-of-00002.parquet",
        "part-00001-of-00002.parquet"]
    assert sorted(p.name for p in (out / "_shards").iterdir()) == ["00000-of-00002.json", "00001-of-00002.json"]
