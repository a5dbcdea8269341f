"""Delivery steps that cloudbuild.yaml calls: build the function source, deploy a tagged candidate,
smoke-test it, shift traffic, judge the canary, promote or roll back.

Usage: python -m scripts.rollout COMMAND [options]   (python -m scripts.rollout -h lists the commands)
Commands that change Cloud Run run `gcloud`; `--dry-run` prints the command instead of running it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from retrain_job.metrics import monitoring_client
from shared.settings import Settings
from shared.spec import load_spec, spec_names

REPO = Path(__file__).resolve().parent.parent


# ---- build ---------------------------------------------------------------------------------------

def build_source(store_uri: str, out: Path) -> Path:
    """The function's deploy bundle: `main.py` at the root with the packages it imports beside it
    (Functions Framework puts the source folder on the import path), the model specs, hash-locked requirements,
    and each model's current stable bundle in the store as its shipped fallback.
    """
    from retrain_job.publish import copy_stable  # noqa: PLC0415 - needs the job's environment
    from shared.pointer import read_pointer  # noqa: PLC0415
    from shared.store import LocalStore, open_store  # noqa: PLC0415

    if out.exists():
        shutil.rmtree(out)
    code = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "function", out / "function", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "shipped_model", "main.py", "requirements*"))
    shutil.copytree(REPO / "shared", out / "shared", ignore=code)
    shutil.copytree(REPO / "specs", out / "specs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.csv"))
    shutil.copy(REPO / "function" / "main.py", out / "main.py")
    shutil.copy(REPO / "function" / "requirements.lock", out / "requirements.txt")
    store = open_store(store_uri)
    for name in spec_names():
        if read_pointer(store, name)[0] is None:  # never published: no fallback; /health says so when it serves
            print(f"no stable {name} bundle in {store_uri}: shipped without its fallback model", file=sys.stderr)
            continue
        copy_stable(store, LocalStore(out / "function" / "shipped_model"), name)
    archive = shutil.make_archive(str(out), "zip", root_dir=out)
    return Path(archive)


# ---- smoke test ----------------------------------------------------------------------------------

def _post(url: str, body: bytes, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def smoke(url: str, model: str, token: str | None = None) -> list[str]:
    """The model's example requests must come back right and one bad input must be a 400; returns failures."""
    spec = load_spec(model)
    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    examples = spec.examples()
    status, body = _post(endpoint, json.dumps({"instances": [e["request"] for e in examples]}).encode(), token)
    answers = body.get("predictions") or [{}] * len(examples)
    failures = [f"example {i}: HTTP {status}" for i in range(len(examples))] if status != 200 else []
    for i, (example, answer) in enumerate(zip(examples, answers)):
        got = answer.get(spec.target.name)
        ok = got == example["expected"] if spec.is_classifier else \
            isinstance(got, float) and abs(got - example["expected"]) <= example["tolerance"]
        if status == 200 and not ok:
            failures.append(f"example {i}: expected {example['expected']!r}, answered {got!r}")
    numeric = next(f.name for f in spec.features if f.kind == "numeric")
    bad = {"instances": [{**examples[0]["request"], numeric: -1}]}
    status, body = _post(endpoint, json.dumps(bad).encode(), token)
    if status != 400 or body.get("error", {}).get("status") != "INVALID_ARGUMENT":
        failures.append(f"bad input: HTTP {status} instead of 400")
    return failures


# ---- canary judgement ----------------------------------------------------------------------------

def canary_error_ratio(client, project: str, service: str, revision: str, window_s: int) -> tuple[int, int]:
    """(5xx responses, all responses) of one revision over the last window, from Cloud Monitoring."""
    from google.cloud import monitoring_v3  # noqa: PLC0415

    now = time.time()
    interval = monitoring_v3.TimeInterval({"end_time": {"seconds": int(now)},
                                           "start_time": {"seconds": int(now - window_s)}})
    series = client.list_time_series(request={
        "name": f"projects/{project}",
        "filter": ('metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" '
                   f'AND resource.labels.service_name="{service}" AND resource.labels.revision_name="{revision}"'),
        "interval": interval,
        "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
    })
    errors = total = 0
    for ts in series:
        count = sum(int(p.value.int64_value) for p in ts.points)
        total += count
        if ts.metric.labels.get("response_code_class") == "5xx":
            errors += count
    return errors, total


def canary_verdict(errors: int, total: int, max_ratio: float, min_requests: int) -> tuple[bool, str]:
    """Healthy unless the 5xx share is above max_ratio; too few requests is a failure (nothing proven)."""
    if total < min_requests:
        return False, f"only {total} requests reached the canary (need {min_requests})"
    ratio = errors / total
    return ratio <= max_ratio, f"5xx ratio {ratio:.4f} ({errors}/{total}), limit {max_ratio}"


def tag_url(service: str, region: str, tag: str) -> str:
    """The URL Cloud Run gives a tagged revision (from `gcloud run services describe`)."""
    out = subprocess.run(["gcloud", "run", "services", "describe", service, f"--region={region}", "--format=json"],
                         check=True, capture_output=True, text=True).stdout
    return next(t["url"] for t in json.loads(out)["status"]["traffic"] if t.get("tag") == tag)


# ---- traffic -------------------------------------------------------------------------------------

def gcloud_commands(args: argparse.Namespace) -> list[list[str]]:
    """The gcloud invocations of a deploy or traffic command."""
    base = ["gcloud", "run", "services", "update-traffic", args.service, f"--region={args.region}"]
    if args.command == "remove-candidate":
        return [[*base, f"--remove-tags={args.tag}"]]
    if args.command == "deploy-candidate":
        return [["gcloud", "run", "deploy", args.service, f"--region={args.region}", f"--source={args.source}",
                 "--function=predict", f"--base-image={args.base_image}", "--no-traffic", f"--tag={args.tag}",
                 f"--revision-suffix={args.revision_suffix}", "--quiet"]]
    if args.command == "shift":
        return [[*base, f"--to-tags={args.tag}={args.percent}"]]
    if args.command == "promote":
        return [[*base, f"--to-tags={args.tag}=100"]]
    if args.command == "rollback":
        return [[*base, f"--to-revisions={args.to_revision}=100"]]
    raise ValueError(args.command)


def _run(command: list[str], dry_run: bool) -> None:
    print(" ".join(command), flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def canary(args: argparse.Namespace, client) -> int:
    """Shift the canary share, wait, judge the candidate's 5xx ratio, then promote or roll back."""
    shift = argparse.Namespace(**{**vars(args), "command": "shift"})
    _run(gcloud_commands(shift)[0], args.dry_run)
    time.sleep(args.wait_s)
    errors, total = canary_error_ratio(client, args.project, args.service, args.revision, args.window_s)
    ok, reason = canary_verdict(errors, total, args.max_error_ratio, args.min_requests)
    print(json.dumps({"canary": "pass" if ok else "fail", "reason": reason}), flush=True)
    action = argparse.Namespace(**{**vars(args), "command": "promote" if ok else "rollback"})
    _run(gcloud_commands(action)[0], args.dry_run)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-source", help="assemble and zip the function's deploy bundle")
    b.add_argument("--store", required=True)
    b.add_argument("--out", default="dist/function-source")
    s = sub.add_parser("smoke", help="a model's examples and one bad input against a URL")
    s.add_argument("--model", default=Settings().model_name, choices=spec_names())
    s.add_argument("--url", default=None, help="defaults to the tag URL of --rollback-service's candidate")
    s.add_argument("--token", default=None, help="identity token for a private function")
    s.add_argument("--rollback-service", default=None, help="on failure, untag the candidate of this service")
    s.add_argument("--region", default=None)
    s.add_argument("--tag", default="candidate")
    s.add_argument("--dry-run", action="store_true")
    for name in ("deploy-candidate", "shift", "promote", "rollback", "remove-candidate", "canary"):
        t = sub.add_parser(name, help=f"{name} (runs gcloud)")
        t.add_argument("--service", required=True)
        t.add_argument("--region", required=True)
        t.add_argument("--tag", default="candidate")
        t.add_argument("--dry-run", action="store_true")
        if name == "deploy-candidate":
            t.add_argument("--source", required=True)
            t.add_argument("--revision-suffix", required=True)
            t.add_argument("--base-image", default="python311")
        if name in ("shift", "canary"):
            t.add_argument("--percent", type=int, required=True, choices=range(0, 101), metavar="0-100")
        if name in ("rollback", "canary"):
            t.add_argument("--to-revision", required=True, help="the stable revision to return all traffic to")
        if name == "canary":
            t.add_argument("--project", required=True)
            t.add_argument("--revision", required=True, help="the candidate revision")
            t.add_argument("--wait-s", type=int, default=600)
            t.add_argument("--window-s", type=int, default=600)
            t.add_argument("--max-error-ratio", type=float, default=0.01)
            t.add_argument("--min-requests", type=int, default=50)
            t.add_argument("--endpoint", default=None, help="Monitoring API endpoint (tests use a local server)")
    args = p.parse_args(argv)

    if args.command == "build-source":
        print(build_source(args.store, Path(args.out)))
        return 0
    if args.command == "smoke":
        url = args.url or tag_url(args.rollback_service, args.region, args.tag)
        failures = smoke(url, args.model, args.token)
        print(json.dumps({"smoke": "pass" if not failures else "fail", "failures": failures}), flush=True)
        if failures and args.rollback_service:  # the candidate never had traffic: take its tag URL away
            untag = argparse.Namespace(command="remove-candidate", service=args.rollback_service,
                                       region=args.region, tag=args.tag)
            _run(gcloud_commands(untag)[0], args.dry_run)
        return 1 if failures else 0
    if args.command == "canary":
        return canary(args, monitoring_client(args.endpoint))
    for command in gcloud_commands(args):
        _run(command, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
