"""The BigQuery emulator (PyPI `bqemulator` 1.4) as the suite runs it offline, on one host and port.

Run from the repository root with the emulator's own virtualenv (requirements-bqemulator.txt):

    .venv-bqemulator/bin/python -m scripts.bqemulator_server --host 127.0.0.1 --port 9050 --project test

It serves BigQuery's REST API (what google-cloud-bigquery's Client speaks) at http://HOST:PORT, answers
GET /readyz with 200 once it takes queries, keeps every table in memory (an in-memory DuckDB: nothing
survives the process) and stops on SIGTERM or SIGINT.

Workarounds applied in-process before bqemulator starts:
- bqemulator refuses to start unless DuckDB's `spatial` extension installs and loads, and DuckDB downloads
  extensions from extensions.duckdb.org, unreachable here. Its loader becomes a no-op: only GEOGRAPHY and the
  ST_* functions need the extension, and the product uses neither.
- Its gRPC server (the Storage Read/Write APIs, which the REST client does not need) binds a port of its own,
  9060 by default: it gets a free port on the same host so two emulators never collide.
- Its uploads (load jobs from files or JSON) stage under --upload-dir when given, not the system temp dir.
- Its upload route rejects the media part google-cloud-bigquery sends with load_table_from_file/_json
  (Content-Type `*/*`, which BigQuery accepts) with 400 "unsupported Content-Type '*/*'": `*/*` is added to
  its list of accepted media types.
- Its best-effort load of DuckDB's `avro` extension (another download) is switched off.
Its other needs are pins, not patches: numpy (imported but undeclared) and duckdb 1.5.x (RANGE_BUCKET fails
on duckdb 2.0.1), both in requirements-bqemulator.txt.
"""
from __future__ import annotations

import argparse


def disable_spatial_extension() -> None:
    """Make bqemulator's startup skip DuckDB's spatial extension instead of failing without it."""
    from bqemulator.storage.engine import DuckDBEngine

    def _load_spatial(self) -> None:  # the engine's own method, replaced: no INSTALL/LOAD spatial
        return None

    DuckDBEngine._load_spatial = _load_spatial


def accept_generic_media_type() -> None:
    """Let load jobs uploaded by google-cloud-bigquery (media part `Content-Type: */*`) through."""
    from bqemulator.api.routes import upload

    if "*/*" not in upload._PERMITTED_MEDIA_CONTENT_TYPES:
        upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="REST and gRPC bind host (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="REST port the client's api_endpoint names")
    parser.add_argument("--project", required=True, help="default project id when a request omits it")
    parser.add_argument("--upload-dir", help="where uploaded load-job data is staged (default: system temp dir)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    disable_spatial_extension()
    accept_generic_media_type()

    from bqemulator.config import LogFormat, LogLevel, PersistenceMode, Settings
    from bqemulator.server import run_forever

    settings = Settings(rest_host=args.host, rest_port=args.port, grpc_host=args.host, grpc_port=0,
                        default_project_id=args.project, persistence_mode=PersistenceMode.EPHEMERAL,
                        upload_staging_dir=args.upload_dir, log_level=LogLevel(args.log_level),
                        log_format=LogFormat.JSON, enable_format_extensions=False)
    run_forever(settings)


if __name__ == "__main__":
    main()
