"""`python -m retrain_job score`: files of rows scored by the serving code, sharded across a Cloud Run Job's tasks.

`cli` parses the flags, `run` orchestrates one task, `sources` finds the input files and splits them into shards,
`columns` validates Arrow chunks with the function's validator, `answers` turns predictions into output columns,
`outputs` commits each task's files and the manifest, `predlog` writes the prediction log lines (`--log`) and
`storage` streams objects through the repository's stores.
"""
