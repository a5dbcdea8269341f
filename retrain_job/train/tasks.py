"""Splitting the hyperparameter search across Cloud Run Job tasks, and merging the partial results.

Task i of N scores every N-th item of the search (i, i+N, ...) and writes its scores to
`runs/<model>/<run id>/scores/task-<i>.json`. After writing, it lists the folder: the task that sees all
N files is the last to finish (each lists after its own write, so the last writer always sees them all).
It claims the merge with a create-if-absent write of `runs/<model>/<run id>/merge.claim`, so even two
tasks finishing together produce one candidate. One task alone (N = 1) is the same path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from shared.settings import JOB, Settings
from shared.store import PreconditionFailed, Store


@dataclass(frozen=True)
class Task:
    """This process's place in the job execution."""

    index: int = 0
    count: int = 1
    run_id: str = "local"

    @classmethod
    def from_env(cls, default_run_id: str, settings: Settings | None = None) -> Task:
        """Cloud Run Jobs' task index, task count and execution (the run id), from the job's settings."""
        s = settings if settings is not None else Settings.from_env(reader=JOB)
        return cls(s.task_index, s.task_count, s.execution or default_run_id)


def share(items: list, task: Task) -> list:
    """This task's part of the search: every count-th item from its index."""
    return items[task.index::task.count]


def run_prefix(model: str, task: Task) -> str:
    """Where the tasks of one execution training one model meet in the store."""
    return f"runs/{model}/{task.run_id}/"


def report_scores(store: Store, task: Task, scores: list[dict], model: str) -> list[dict] | None:
    """Record this task's scores; return everyone's if this task should merge, else None."""
    prefix = run_prefix(model, task) + "scores/"
    store.write(f"{prefix}task-{task.index}.json", json.dumps(scores).encode())
    keys = [k for k in store.list(prefix) if k.endswith(".json")]
    if len(keys) < task.count:
        return None
    try:
        store.write(run_prefix(model, task) + "merge.claim", str(task.index).encode(), if_generation_match=0)
    except PreconditionFailed:
        return None  # another task finished at the same moment and merges
    merged: list[dict] = []
    for key in sorted(keys):
        merged.extend(json.loads(store.read(key)[0]))
    return merged
