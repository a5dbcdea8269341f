"""Copy the store's stable bundle into function/shipped_model, the fallback deployed with the code.

Usage: python -m scripts.ship_model [--store URI] [--target DIR]
"""
from __future__ import annotations

import argparse
import sys

from retrain_job.publish import copy_stable
from shared.settings import JOB, REPO_ROOT, exit_on_bad_settings
from shared.store import LocalStore, open_store


def main() -> int:
    """Copy the stable bundle; MODEL_STORE and MODEL_NAME are read, with the job's other settings, at start."""
    settings = exit_on_bad_settings("python -m scripts.ship_model", JOB)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--store", default=settings.model_store)
    p.add_argument("--target", default=str(REPO_ROOT / "function" / "shipped_model"))
    args = p.parse_args()
    version = copy_stable(open_store(args.store), LocalStore(args.target), settings.model_name)
    print(f"shipped {version} into {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
