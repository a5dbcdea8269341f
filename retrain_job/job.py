"""One retraining run, start to finish: data, search, candidate, gate, publish; returns the summary."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from retrain_job import train
from retrain_job.data import load_base
from retrain_job.gate import Tolerances, judge
from retrain_job.publish import KEEP_FALLBACKS, PointerRace, apply_retention, promote, stage
from shared.bundle import CorruptBundle, read_bundle
from shared.pointer import read_pointer
from shared.store import NotFound, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """Everything a run can be told (flags and environment map onto these)."""

    model_name: str = "penguins"
    canary_percent: float = 0.0
    dry_run: bool = False
    if_no_model: bool = False
    keep: int = KEEP_FALLBACKS
    tolerances: Tolerances = field(default_factory=Tolerances)


def run(store: Store, opts: JobOptions) -> dict:
    """Train, gate and publish; the returned summary is the job's last output line."""
    started = time.perf_counter()
    durations: dict[str, float] = {}
    summary: dict = {"store": store.uri, "model": opts.model_name, "durations_s": durations}

    def timed(name: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        durations[name] = round(time.perf_counter() - t0, 3)
        return result

    pointer, _ = read_pointer(store, opts.model_name)
    if opts.if_no_model and pointer is not None:
        return {**summary, "decision": "kept", "reason": "a model is already published", "stable": pointer.stable}

    data = timed("data", load_base)
    split = train.split(data)
    labels = tuple(sorted(data["species"].unique()))
    contract = train.build_contract(split.train, labels)
    x, y = train.encode(split.train, contract, labels)
    scores = timed("search", lambda: [train.cv_score(x, y, p, len(labels)) for p in train.grid()])
    params = train.best_params(scores)
    sources = [{"name": "palmerpenguins", "rows": int(len(data))}]
    candidate = timed("train", train.build_candidate, data, split, params, scores, sources)

    stable = None
    if pointer is not None:
        try:
            stable = read_bundle(store, opts.model_name, pointer.stable)
        except (NotFound, CorruptBundle) as exc:
            log.warning("stable version unreadable, gating on sanity only: %s", exc)
    verdict = timed("gate", judge, candidate, stable, split.holdout, opts.tolerances)
    summary.update(candidate=candidate.version, stable_before=pointer.stable if pointer else None,
                   params=params, metrics={"candidate": verdict.candidate, "stable": verdict.stable},
                   gate={"passed": verdict.passed, "reasons": verdict.reasons})

    if not verdict.passed:
        summary["decision"] = "rejected"
    elif opts.dry_run:
        summary["decision"] = "dry-run"
    else:
        try:
            timed("stage", stage, store, opts.model_name, candidate)
            published = promote(store, opts.model_name, candidate.version, opts.canary_percent, opts.keep)
        except PointerRace as exc:
            summary["decision"] = "lost-race"
            summary["reason"] = str(exc)
        else:
            summary["decision"] = "canary" if published.after.canary == candidate.version else "promoted"
            summary["pointer"] = {"stable": published.after.stable, "previous": list(published.after.previous),
                                  "canary": published.after.canary, "canary_percent": published.after.canary_percent}
            summary["retention_deleted"] = apply_retention(store, opts.model_name)
    durations["total"] = round(time.perf_counter() - started, 3)
    return summary
