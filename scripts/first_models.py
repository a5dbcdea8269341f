"""`make model`'s progress: one short line per model from the job's JSON summaries, as each model ends.

`python -m retrain_job --all-models --if-no-model` prints one JSON summary per model (then one naming them
all); a newcomer needs to know which model was trained, how good it is and what to do when one failed, not
the summaries or the metric records. Reads the summaries on stdin; exit 1 if a model failed.
"""
from __future__ import annotations

import json
import sys


def key_figures(summary: dict) -> str:
    """The holdout figures a person reads first: accuracy (and ROC AUC) of a classifier, RMSE and interval
    coverage of a regressor's first regime."""
    candidate = (summary.get("metrics") or {}).get("candidate") or {}
    if "regimes" in candidate:
        name, first = next(iter(candidate["regimes"].items()))
        return f"holdout RMSE {first['rmse']:.4g}, interval coverage {first['coverage']:.1%} ({name})"
    parts = [f"holdout accuracy {candidate['accuracy']:.1%}"] if "accuracy" in candidate else []
    if candidate.get("roc_auc") is not None:
        parts.append(f"ROC AUC {candidate['roc_auc']:.3f}")
    return ", ".join(parts)


def progress_line(summary: dict) -> str | None:
    """One line for one model's summary (None for the closing all-models line)."""
    model, decision = summary.get("model"), summary.get("decision")
    if decision == "all-models" or model is None:
        return None
    seconds = (summary.get("durations_s") or {}).get("total")
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    if decision == "kept":
        return f"{model}: already published ({summary.get('stable')})"
    if decision in ("promoted", "canary"):
        return f"{model}: trained and published {summary['candidate']}{took}; {key_figures(summary)}"
    if decision == "rejected":
        return f"{model}: trained{took} but the gate refused it: {'; '.join(summary['gate']['reasons'])}"
    return f"{model}: {decision}: {summary.get('error') or summary.get('reason') or ''}".rstrip(": ")


def main() -> int:
    """Print a progress line per summary read on stdin; 1 if any model failed or was refused."""
    status = 0
    for text in sys.stdin:
        try:
            summary = json.loads(text)
        except ValueError:
            print(text.rstrip(), flush=True)
            continue
        line = progress_line(summary)
        if line:
            print(line, flush=True)
            status = max(status, int(summary.get("decision") in ("failed", "rejected")))
    return status


if __name__ == "__main__":
    sys.exit(main())
