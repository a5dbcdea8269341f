"""`python -m retrain_job card [--model NAME | --all-models] [--version V]`: write or refresh model cards.

Every published version of the model (or only `--version`) gets `card.json` and `card.html` in its folder, with
the monitor's latest figures. One summary line per model, then (with `--all-models`) one naming every model's;
the last output line is JSON. Exit 0 when every card was written, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from retrain_job.card.store import refresh_cards
from retrain_job.monitor.keys import latest_report_key
from shared.settings import JOB, Settings, configure_logging
from shared.spec import load_spec, spec_names
from shared.store import open_store

PROG = "python -m retrain_job card"


def parse_args(argv: list[str], settings: Settings | None = None) -> argparse.Namespace:
    """The flags; the store and the model default to their settings (MODEL_STORE, MODEL_NAME)."""
    s = settings if settings is not None else Settings.from_env(reader=JOB)
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=s.model_store, help="gs://bucket/prefix or a local directory (MODEL_STORE)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", "--model-name", dest="model", default=s.model_name, choices=spec_names(),
                       help="the model whose cards to write (MODEL_NAME)")
    which.add_argument("--all-models", action="store_true", help="every model with a spec, in name order")
    p.add_argument("--version", help="only this version (default: every published version)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the cards asked for; the last output line is the JSON summary."""
    settings = Settings.from_env(reader=JOB)
    configure_logging(settings.log_level)
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    store = open_store(args.store)
    names = spec_names() if args.all_models else (args.model,)
    outcomes, status = {}, 0
    for name in names:
        try:
            summary = refresh_cards(store, load_spec(name), None if args.version is None else [args.version],
                                    monitor_key=latest_report_key(name))
        except Exception as exc:  # the summary line still names the model and the error
            logging.exception("writing the cards of %s failed", name)
            summary = {"model": name, "written": {}, "failed": {"*": f"{type(exc).__name__}: {exc}"}}
        status = max(status, 1 if summary["failed"] else 0)
        outcomes[name] = summary
        if args.all_models:
            print(json.dumps({"command": "card", **summary}), flush=True)
    if args.all_models:
        print(json.dumps({"command": "card", "decision": "all-models",
                          "models": {n: {"written": len(o["written"]), "failed": o["failed"]}
                                     for n, o in outcomes.items()}}))
    else:
        print(json.dumps({"command": "card", "decision": "written" if status == 0 else "failed",
                          **outcomes[names[0]]}))
    return status
