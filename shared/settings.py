"""Every environment setting of the function and the job, read in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_STORE = REPO_ROOT / "local_bucket"

MODEL_NAME = "penguins"
CLASS_LABELS = ("Adelie", "Chinstrap", "Gentoo")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Serving and job settings; see the README's settings table for each one's meaning."""

    model_store: str = str(DEFAULT_LOCAL_STORE)
    model_name: str = MODEL_NAME
    pointer_ttl_s: float = 30.0
    storage_timeout_s: float = 5.0
    storage_retry_max_s: float = 30.0
    max_batch_rows: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    log_to_store: bool = False
    log_prefix: str = "logs"
    canary_header: str = "x-request-key"
    fast_predictor_max_rows: int = 64
    shipped_model_dir: str | None = None  # None: function/shipped_model beside the code

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from the process environment (unset variables keep their defaults)."""
        env = os.environ
        d = cls()
        return cls(
            model_store=env.get("MODEL_STORE", d.model_store),
            model_name=env.get("MODEL_NAME", d.model_name),
            pointer_ttl_s=float(env.get("POINTER_TTL_S", d.pointer_ttl_s)),
            storage_timeout_s=float(env.get("STORAGE_TIMEOUT_S", d.storage_timeout_s)),
            storage_retry_max_s=float(env.get("STORAGE_RETRY_MAX_S", d.storage_retry_max_s)),
            max_batch_rows=int(env.get("MAX_BATCH_ROWS", d.max_batch_rows)),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", d.max_body_bytes)),
            log_to_store=_env_bool("LOG_TO_STORE", d.log_to_store),
            log_prefix=env.get("LOG_PREFIX", d.log_prefix),
            fast_predictor_max_rows=int(env.get("FAST_PREDICTOR_MAX_ROWS", d.fast_predictor_max_rows)),
            shipped_model_dir=env.get("SHIPPED_MODEL_DIR") or None,
        )
