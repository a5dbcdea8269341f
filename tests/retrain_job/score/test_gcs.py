"""`score` from and to Cloud Storage (the fake GCS server): inputs streamed, outputs committed whole."""
from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from retrain_job.score.outputs import MANIFEST


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, row_group_size=50)
    return buffer.getvalue()


def test_gcs_input_glob_to_gcs_output(store, gcs_store, penguin_rows, run_score):
    frame = penguin_rows.iloc[:200].astype({"island": object}).reset_index(drop=True)
    frame.loc[7, "island"] = "Atlantis"
    gcs_store.write("in/a.parquet", _parquet(frame.iloc[:120]))
    gcs_store.write("in/b.parquet", _parquet(frame.iloc[120:]))
    frame.iloc[:10].to_csv(buf := io.StringIO(), index=False)
    gcs_store.write("in/skipped.txt", buf.getvalue().encode())
    base = gcs_store.uri
    for index in (0, 1):
        code, summary = run_score("--model", "penguins", "--input", f"{base}/in/*.parquet", "--output", f"{base}/out",
                                  "--store", str(store.root), index=index, count=2)
        assert code == 0, summary
    assert summary["complete"] is True
    keys = gcs_store.list("out/")
    assert keys == ["out/_SUCCESS", "out/_shards/00000-of-00002.json", "out/_shards/00001-of-00002.json",
                    "out/errors-00000-of-00002.parquet", "out/errors-00001-of-00002.parquet",
                    "out/part-00000-of-00002.parquet", "out/part-00001-of-00002.parquet"]  # no temporary object left
    manifest = json.loads(gcs_store.read(f"out/{MANIFEST}")[0])
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"]) == (200, 199, 1)
    parts = [pq.read_table(io.BytesIO(gcs_store.read(k)[0])) for k in keys if "/part-" in k]
    assert sum(p.num_rows for p in parts) == 199
    errors = pa.concat_tables(pq.read_table(io.BytesIO(gcs_store.read(k)[0])) for k in keys if "/errors-" in k)
    assert errors.to_pylist() == [{"file": f"{base}/in/a.parquet", "row": 7, "field": "island",
                                   "message": "must be one of Biscoe, Dream, Torgersen (any case)"}]
