"""New models from public data sets nobody tuned for: `init`, then the job, beside a plain XGBoost on the same split.

Each data set in tests/data/onboarding/ goes through the newcomer's path with no hand edit: `python -m
retrain_job init` writes its spec into a scratch specs folder, `python -m retrain_job --model NAME` trains,
gates and publishes it into a scratch store (the real job, as a process, with SPECS_DIR pointing there). The
reference is what a user would write first: XGBoost's scikit-learn estimator with `n_estimators=300` and
every other parameter left at its default, categories one-hot encoded, missing values left as NaN, fitted on
the same training rows and scored on the same frozen holdout.

    python -m bench.onboarding            # prints the table and writes bench/ONBOARDING.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "onboarding"
PLAIN_ROUNDS = 300  # the reference's n_estimators; everything else XGBoost's default


@dataclass(frozen=True)
class Dataset:
    """A public CSV and the column a user would predict."""

    name: str
    csv: Path
    target: str


DATASETS = (
    Dataset("actg175", DATA / "actg175" / "ACTG175.csv", "cens"),
    Dataset("seattle-weather", DATA / "seattle_weather" / "seattle-weather.csv", "temp_min"),
    Dataset("breast-cancer", DATA / "breast_cancer" / "breast_cancer.csv", "diagnosis"),
)


def _module(*args: str, specs_dir: Path, timeout: float = 600) -> tuple[int, dict, float]:
    """`python -m retrain_job ARGS` with SPECS_DIR set: exit code, last output line (JSON), seconds."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "retrain_job", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "SPECS_DIR": str(specs_dir), "LOG_LEVEL": "WARNING"},
                          timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"retrain_job {' '.join(args)} printed nothing: {proc.stderr[-2000:]}")
    return proc.returncode, json.loads(lines[-1]), seconds


def onboard(dataset: Dataset, specs_dir: Path, store: Path) -> dict:
    """`init` then one job run: the init summary, the job's summary and how long training took."""
    specs_dir.mkdir(parents=True, exist_ok=True)
    code, written, _ = _module("init", "--csv", str(dataset.csv), "--target", dataset.target, "--name",
                               dataset.name, "--specs-dir", str(specs_dir), specs_dir=specs_dir)
    if code != 0:
        raise RuntimeError(f"init {dataset.name}: {written}")
    code, summary, seconds = _module("--store", str(store), "--model", dataset.name, specs_dir=specs_dir)
    return {"init": written, "job": summary, "job_seconds": round(seconds, 1), "exit": code}


def plain_xgboost(name: str, specs_dir: Path) -> dict:
    """The reference model on the job's own split of the spec's base data: ROC AUC or RMSE, and fit seconds."""
    import xgboost as xgb  # noqa: PLC0415 - the bench's own import, kept out of module import time

    from retrain_job.data.labelled import read_base  # noqa: PLC0415
    from retrain_job.train.split import frozen_holdout  # noqa: PLC0415
    from shared.spec import load_spec  # noqa: PLC0415

    spec = load_spec(name, specs_dir)
    base = read_base(spec).frame
    held = frozen_holdout(base, spec).mask
    names = [f.name for f in spec.features]
    categorical = [f.name for f in spec.features if f.kind == "categorical"]
    x = pd.get_dummies(base[names].astype({c: object for c in categorical}), columns=categorical, dtype=float)
    x = x.astype(float)
    started = time.perf_counter()
    if spec.is_classifier:
        y = (base[spec.target.name] == spec.target.positive).to_numpy(dtype=int) if spec.is_binary else \
            base[spec.target.name].map({label: i for i, label in enumerate(spec.labels)}).to_numpy(dtype=int)
        model = xgb.XGBClassifier(n_estimators=PLAIN_ROUNDS).fit(x[~held], y[~held])
        p = model.predict_proba(x[held])
        out = {"roc_auc": round(float(roc_auc_score(y[held], p[:, 1])), 6)} if spec.is_binary else \
            {"accuracy": round(float(np.mean(p.argmax(axis=1) == y[held])), 6)}
    else:
        y = base[spec.target.name].to_numpy(dtype=np.float64)
        model = xgb.XGBRegressor(n_estimators=PLAIN_ROUNDS).fit(x[~held], y[~held])
        out = {"rmse": round(float(np.sqrt(np.mean((model.predict(x[held]) - y[held]) ** 2))), 4)}
    return {**out, "fit_seconds": round(time.perf_counter() - started, 2), "holdout_rows": int(held.sum()),
            "columns": int(x.shape[1])}


def ours(summary: dict) -> dict:
    """Our candidate's holdout figures from the job's summary."""
    m = summary["metrics"]["candidate"]
    if "regimes" in m:
        first = next(iter(m["regimes"].values()))
        return {"rmse": first["rmse"], "coverage": first["coverage"], "mean_width": first["mean_width"]}
    keep = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall")
    return {k: m[k] for k in keep if k in m} | {"threshold": summary["threshold"]["value"]}


def compare(datasets: tuple[Dataset, ...] = DATASETS) -> list[dict]:
    """Every data set onboarded into a scratch folder, with our figures beside the reference's."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="onboarding-") as scratch:
        specs, store = Path(scratch) / "specs", Path(scratch) / "store"
        for dataset in datasets:
            run = onboard(dataset, specs, store)
            rows.append({"dataset": dataset.name, "task": run["init"]["task"], "decision": run["job"]["decision"],
                         "job_seconds": run["job_seconds"], "ours": ours(run["job"]),
                         "plain": plain_xgboost(dataset.name, specs),
                         "spec": (specs / dataset.name / "spec.toml").read_text()})
    return rows


def markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown page."""
    lines = ["# New models from public data sets: ours beside a plain XGBoost", "",
             "Generated by `python -m bench.onboarding` (see its docstring): `init` with no hand edit, one job run,",
             f"and XGBoost's estimator with n_estimators={PLAIN_ROUNDS}, defaults otherwise, on the same split.", "",
             "| data set | task | decision | job (s) | ours | plain XGBoost | reference fit (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ours_text = ", ".join(f"{k} {v}" for k, v in r["ours"].items())
        plain_text = ", ".join(f"{k} {v}" for k, v in r["plain"].items() if k in ("roc_auc", "rmse", "accuracy"))
        lines.append(f"| {r['dataset']} | {r['task']} | {r['decision']} | {r['job_seconds']} | {ours_text} | "
                     f"{plain_text} | {r['plain']['fit_seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the comparison, print it and write the page."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "ONBOARDING.md")
    args = p.parse_args()
    rows = compare()
    page = markdown(rows)
    print(page)
    args.out.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
