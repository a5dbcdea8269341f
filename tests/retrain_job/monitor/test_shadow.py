"""The shadow judged by the monitor: the real function scores requests with a shadow beside stable and logs both,
truths come back through `POST /feedback`, `python -m retrain_job monitor` reports agreement, the paired quality
difference and a verdict, and `promote-shadow` respects it. The verdict's rules, case by case, on sums."""
from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest

from function.serving import logs
from retrain_job.__main__ import main
from retrain_job.data.feedback import ShadowPairs
from retrain_job.data.labelled import load_base
from retrain_job.monitor.run import monitor_prefix
from retrain_job.monitor.shadow import shadow_points, verdict
from shared.bundle import write_bundle
from shared.pointer import read_pointer, write_pointer
from shared.spec import load_spec
from shared.store import LocalStore
from testbed.servers import FunctionServer
from tests.retrain_job.data.test_logs import SinkLog
from tests.retrain_job.monitor.test_run import predict, request_rows, routing_keys
from tests.support.bundles import STABLE, as_version, publish
from tests.support.http import get, post

SHADOW = "20261103T000000Z-shadow00"
PENGUINS = load_spec("penguins")
SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def pairs(*, labelled: int, shadow_hits: int, answer_hits: int, differing: int, classifier: bool = True,
          error_difference: float = 0.0, error_squares: float = 0.0) -> ShadowPairs:
    return ShadowPairs("s", "v", "stable", classifier, pairs=labelled, agreed=labelled - differing,
                       compared=0 if classifier else labelled, abs_difference=0.0, squared_difference=0.0,
                       labelled=labelled, shadow_hits=shadow_hits, answer_hits=answer_hits,
                       differing_hits=differing, scored=0 if classifier else labelled,
                       error_difference=error_difference, error_difference_squares=error_squares,
                       shadow_squares=0.0, answer_squares=0.0, with_interval=0, inside=0)


@pytest.mark.parametrize(("case", "expected"), [
    (dict(labelled=20, shadow_hits=0, answer_hits=20, differing=20), "undecided"),  # below min_labels
    (dict(labelled=400, shadow_hits=300, answer_hits=380, differing=80), "worse"),  # 20 points worse
    (dict(labelled=400, shadow_hits=380, answer_hits=300, differing=80), "better"),
    (dict(labelled=400, shadow_hits=380, answer_hits=380, differing=0), "not-worse"),  # the same answers
    (dict(labelled=400, shadow_hits=376, answer_hits=380, differing=20), "undecided"),  # straddles the tolerance
    (dict(labelled=400, shadow_hits=0, answer_hits=0, differing=0, classifier=False, error_difference=400.0,
          error_squares=440.0), "worse"),  # 1 g/km worse in MAE, tolerance 0.5
    (dict(labelled=400, shadow_hits=0, answer_hits=0, differing=0, classifier=False, error_difference=-400.0,
          error_squares=440.0), "better"),
])
def test_the_verdict_reads_the_paired_interval_against_the_tolerance(case, expected):
    name, evidence = verdict(pairs(**case), {"accuracy": 0.01, "rmse": 0.5}, min_labels=30)
    assert name == expected, evidence


def test_no_pair_with_stable_is_undecided():
    assert verdict(None, {"accuracy": 0.01}, 30)[0] == "undecided"


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory, trained_bundle):
    """A store whose pointer names the same model as stable and as a shadow, served over HTTP: 120 answered rows,
    each scored by the shadow too, and truths for 80 of them (the stable's answer, but one in ten wrong)."""
    root = tmp_path_factory.mktemp("shadow") / "store"
    store = LocalStore(root)
    publish(store, trained_bundle, STABLE)
    write_bundle(store, "penguins", as_version(trained_bundle, SHADOW))
    pointer, generation = read_pointer(store, "penguins")
    write_pointer(store, "penguins", pointer.touched(shadow=SHADOW, shadow_percent=100.0), generation)
    rows = request_rows(PENGUINS, load_base(PENGUINS).sample(120, random_state=11))
    server = FunctionServer({"MODEL_STORE": str(root), "LOG_TO_STORE": "1", "POINTER_TTL_S": "60",
                             "LOG_FLUSH_INTERVAL_S": "0.05"}, workers=1, threads=4).start()
    try:
        answers = []
        for b in range(3):
            answers += predict(server.url, "penguins", rows[b * 40:(b + 1) * 40], f"sh-{b}", routing_keys()[0][b])
        truths = [{"id": a["id"], "truth": a["species"] if k % 10 else next(s for s in SPECIES if s != a["species"])}
                  for k, a in enumerate(answers[:80])]
        status, body, _ = post(f"{server.url}/feedback", {"model": "penguins", "instances": truths})
        assert status == 202, body
        deadline = time.monotonic() + 30
        while get(f"{server.url}/health")[1]["models"]["penguins"]["shadow"]["scored"] < 3:  # scored off the
            assert time.monotonic() < deadline  # answers' time: wait for it before the server stops
            time.sleep(0.05)
    finally:
        server.stop()  # flushes the log, the shadow's rows included
    return store, answers


def run_main(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(list(args))
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_monitor_reports_the_shadow_beside_stable_and_promote_shadow_follows(shadowed, tmp_path, capsys):
    shutil.copytree(shadowed[0].root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    code, summary = run_main(capsys, "monitor", "--model", "penguins", "--store", str(store.root))
    assert code == 0
    assert summary["shadow"]["version"] == SHADOW and summary["shadow"]["verdict"] == "not-worse", summary["shadow"]
    report = json.loads(store.read(monitor_prefix("penguins") + "latest.json")[0])
    section = report["shadow"]
    # the same model: every one of the 120 answers agreed with, and the same 80 truths judged alike
    assert section["agreement"]["value"] == 1.0 and section["agreement"]["n"] == 120
    quality = section["quality"]
    assert quality["labelled"] == 80 and quality["shadow"] == quality["answered"] == 0.9
    assert quality["difference"]["value"] == 0.0 and quality["difference"]["low"] == 0.0
    # the answers given are counted once: 120 served by stable, nothing by a "shadow" role
    assert {(v["model_version"], v["role"]): v["predictions"] for v in report["versions"]} == {(STABLE, "stable"): 120}
    assert [p.name for p in shadow_points(section, 30)] == ["live_shadow_agreement", "live_shadow_quality_difference"]
    assert "Shadow" in store.read(monitor_prefix("penguins") + "latest.html")[0].decode()

    code, moved = run_main(capsys, "promote-shadow", "--model", "penguins", "--store", str(store.root))
    assert code == 0 and moved["verdict"] == "not-worse"
    pointer = read_pointer(store, "penguins")[0]
    assert (pointer.stable, pointer.shadow, pointer.previous[0]) == (SHADOW, None, STABLE)


def test_a_shadow_measured_worse_is_not_promoted_unless_forced(tmp_path, trained_bundle, capsys):
    store = LocalStore(tmp_path / "store")
    publish(store, trained_bundle, STABLE)
    write_bundle(store, "penguins", as_version(trained_bundle, SHADOW))
    pointer, generation = read_pointer(store, "penguins")
    write_pointer(store, "penguins", pointer.touched(shadow=SHADOW), generation)
    log = SinkLog(store)
    at = datetime.now(UTC) - timedelta(hours=2)
    answers = [SPECIES[k % 3] for k in range(200)]
    wrong = [SPECIES[(k + 1) % 3] if k % 3 else SPECIES[k % 3] for k in range(200)]  # right on a third
    log.prediction("w", answers, at=at, model="penguins", version=STABLE)
    log.prediction("w", wrong, at=at, model="penguins", version=SHADOW, role="shadow", event="prediction_rows")
    log.feedback([{"id": f"w-{k}", "truth": a} for k, a in enumerate(answers)], at=at + timedelta(minutes=5),
                 model="penguins")
    logs.flush()
    code, summary = run_main(capsys, "monitor", "--model", "penguins", "--store", str(store.root))
    assert code == 0 and summary["shadow"]["verdict"] == "worse", summary["shadow"]
    assert "accuracy shadow minus stable -0.665" in summary["shadow"]["evidence"]

    code, refused = run_main(capsys, "promote-shadow", "--model", "penguins", "--store", str(store.root))
    assert code == 1 and "worse" in json.dumps(refused)
    assert read_pointer(store, "penguins")[0].stable == STABLE
    code, forced = run_main(capsys, "promote-shadow", "--force", "--model", "penguins", "--store", str(store.root))
    assert code == 0 and read_pointer(store, "penguins")[0].stable == SHADOW
