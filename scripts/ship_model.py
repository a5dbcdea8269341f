"""Copy the store's stable bundle of each model into function/shipped_model, the fallback deployed with the code.

Usage: python -m scripts.ship_model [--store URI] [--target DIR] [--model NAME ...]   (default: every spec)
Older shipped versions of those models are removed, so the code carries one bundle per model.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from retrain_job.publish import copy_stable
from shared.settings import JOB, REPO_ROOT, exit_on_bad_settings
from shared.spec import spec_names
from shared.store import LocalStore, open_store


def main() -> int:
    """Copy the stable bundles; MODEL_STORE is read, with the job's other settings, at start."""
    settings = exit_on_bad_settings("python -m scripts.ship_model", JOB)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--store", default=settings.model_store)
    p.add_argument("--target", default=str(REPO_ROOT / "function" / "shipped_model"))
    p.add_argument("--model", action="append", choices=spec_names(), help="repeat for several (default: all)")
    args = p.parse_args()
    store = open_store(args.store)
    for name in args.model or spec_names():
        shutil.rmtree(Path(args.target) / "models" / name, ignore_errors=True)
        version = copy_stable(store, LocalStore(args.target), name)
        print(f"shipped {name} {version} into {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
