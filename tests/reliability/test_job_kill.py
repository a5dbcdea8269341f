"""The retraining job killed at any point leaves no visible half-written version and a valid pointer."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from shared.bundle import list_versions, read_bundle
from shared.pointer import read_pointer
from testbed.servers import REPO
from tests.support.bundles import publish

V0 = "20250101T000000Z-before-kill"
KILL_AFTER_S = (0.4, 0.9, 1.4, 1.9, 2.2, 2.5, 2.8, 3.2)


def _store_is_consistent(store) -> bool:
    pointer, _ = read_pointer(store, "penguins")
    for version in list_versions(store, "penguins"):  # every visible version reads back verified
        read_bundle(store, "penguins", version)
    for version in pointer.chain():  # and the pointer only names whole versions
        read_bundle(store, "penguins", version)
    return True


def test_kill_at_many_points(local_store, trained_bundle, tally):
    publish(local_store, trained_bundle, V0)
    held = 0
    for delay in KILL_AFTER_S:
        proc = subprocess.Popen([sys.executable, "-m", "retrain_job", "--store", str(local_store.root)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        held += _store_is_consistent(local_store)
    tally.add("storage faults", "retraining job SIGKILLed at 8 points", len(KILL_AFTER_S), held)
    assert held == len(KILL_AFTER_S)
    # a whole run afterwards still publishes, and retention clears the leftovers of killed runs
    done = subprocess.run([sys.executable, "-m", "retrain_job", "--store", str(local_store.root)], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _store_is_consistent(local_store)
    folders = {k.split("/")[2] for k in local_store.list("models/penguins/") if k.count("/") >= 3}
    unfinished = folders - set(list_versions(local_store, "penguins"))
    assert len(unfinished) <= 1
