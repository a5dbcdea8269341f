"""Run one function in several threads at once and collect what went wrong."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_threads(fn: Callable[[Any], Any], inputs: Iterable, timeout: float = 120) -> list:
    """Call fn(item) for every item, each in its own thread, all started before any is joined.

    Returns the results in input order. An exception raised in a thread, or a thread still running after
    `timeout` seconds, fails the calling test with every such failure listed.
    """
    items = list(inputs)
    results: list = [None] * len(items)
    failures: list[str] = []

    def call(index: int, item) -> None:
        try:
            results[index] = fn(item)
        except BaseException as exc:  # collected and reported below
            failures.append(f"{item!r}: {exc!r}")

    threads = [threading.Thread(target=call, args=(i, item), daemon=True) for i, item in enumerate(items)]
    for t in threads:
        t.start()
    for item, t in zip(items, threads):
        t.join(timeout)
        if t.is_alive():
            failures.append(f"{item!r}: still running after {timeout} s")
    assert not failures, failures
    return results
