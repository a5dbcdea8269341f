"""`python -m retrain_job init`: a spec inferred from a real CSV, every choice commented, that parses and trains as
written, and never overwrites a spec folder."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tomllib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from retrain_job.data.labelled import read_base
from retrain_job.init import InitError, init_spec, model_name, nice, snake_case
from shared.spec import EXAMPLES_FILE, SPEC_FILE, ModelSpec, parse_spec
from testbed.servers import REPO


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_spec(folder: Path) -> tuple[dict, str, ModelSpec]:
    """The written spec: its TOML as parsed by tomllib, its text, and the platform's ModelSpec of it."""
    text = (folder / SPEC_FILE).read_text()
    raw = tomllib.loads(text)
    return raw, text, parse_spec(raw, folder)


def comments_above(text: str, table: str, name: str) -> list[str]:
    """The comment lines just above the `[[table]]` whose name is `name`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line == f"[[{table}]]" and lines[i + 1] == f'name = "{name}"':
            above = []
            for previous in reversed(lines[:i]):
                if not previous.startswith("#"):
                    break
                above.insert(0, previous)
            return above
    raise AssertionError(f"no [[{table}]] named {name}")


def by_name(raw: dict, table: str) -> dict[str, dict]:
    return {entry["name"]: entry for entry in raw.get(table, [])}


def run_module(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain_job", *args], cwd=REPO, check=False, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def churn_csv(tmp_path) -> Path:
    """A binary text target ("yes" the minority) with missing labels and missing region cells; a customer code."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(150):
        tenure = int(rng.integers(1, 73))
        charges = round(float(rng.uniform(20, 120)), 2)
        plan = ["basic", "plus", "pro"][i % 3]
        region = ["north", "south", "east", "west"][int(rng.integers(0, 4))]
        region = "" if i % 15 == 3 else "NA" if i % 15 == 8 else region  # 20 missing: empty or NA
        churned = "yes" if rng.random() < 0.15 + 0.4 * (tenure < 12) + 0.002 * charges else "no"
        churned = "" if i % 25 == 0 else churned  # 6 rows without a label
        rows.append([f"C{i:05d}", tenure, charges, plan, region, churned])
    return write_csv(tmp_path / "Customer Churn.csv",
                     ["Customer ID", "Tenure (months)", "Monthly Charges", "Plan", "Region", "Churned"], rows)


def test_a_binary_text_target_with_missing_values(churn_csv, tmp_path):
    summary = init_spec(churn_csv, "Churned", specs_dir=tmp_path / "specs")
    folder = tmp_path / "specs" / "customer-churn"  # the CSV's stem, words joined by dashes
    assert summary["path"] == str(folder) and summary["task"] == "binary"
    raw, text, spec = read_spec(folder)
    assert raw["name"] == "customer-churn" and raw["task"] == "binary"
    assert raw["target"] == {"name": "churned", "labels": ["no", "yes"], "positive": "yes"}  # the minority
    assert raw["threshold"] == {"rule": "best_f1"}
    assert "6 of 150 rows have no target and are not usable" in text
    assert '"fixed" with value' in text and '"min_precision" or "min_recall"' in text
    features = by_name(raw, "features")
    assert {n: f["kind"] for n, f in features.items()} == {
        "tenure_months": "numeric", "monthly_charges": "numeric", "plan": "categorical", "region": "categorical"}
    assert features["region"] == {"name": "region", "kind": "categorical", "unseen": "missing", "required": False}
    assert any("20 missing (required = false)" in c for c in comments_above(text, "features", "region"))
    assert features["tenure_months"]["unit"] == "months" and "required" not in features["tenure_months"]
    assert features["tenure_months"]["bounds"][0] == 0 and features["tenure_months"]["low_inclusive"] is True
    assert by_name(raw, "passthrough") == {"customer_id": {"name": "customer_id", "kind": "string", "log": "hash"}}
    assert raw["data"]["required"] == ["churned"] and raw["data"]["bad_rows"] == "drop"
    assert raw["data"]["max_bad_share"] == 0.05 and raw["data"]["file"] == "Customer Churn.csv"
    assert raw["data"]["columns"] == {"Churned": "churned", "Customer ID": "customer_id",
                                      "Tenure (months)": "tenure_months", "Monthly Charges": "monthly_charges",
                                      "Plan": "plan", "Region": "region"}
    assert raw["holdout"] == {"fraction": 0.2, "stratify": True}
    assert raw["gate"] == {"metric": "log_loss", "tolerance": 0.02, "accuracy_tolerance": 0.01,
                           "macro_f1_tolerance": 0.01}
    assert "# no accuracy_floor: consider one above" in text
    assert np.prod([len(v) for v in raw["search"].values()]) <= 24 and "regression" not in raw
    # the platform's own reading: the parser, and the job's intake of the copied, checksummed data
    assert spec.is_binary and spec.labels == ("no", "yes") and spec.threshold.rule == "best_f1"
    base = read_base(spec)
    assert len(base.frame) == 144 and base.intake["bad_rows"] == 0
    assert (folder / "Customer Churn.csv").read_bytes() == churn_csv.read_bytes()
    assert "Licence: TODO" in (folder / "DATA.md").read_text()
    # examples: three requests, one per label, JSON-typed, nothing missing sent, no expected answers
    examples = json.loads((folder / EXAMPLES_FILE).read_text())
    assert len(examples) == 3 and all(list(e) == ["request"] for e in examples)
    labels = {row[0]: row[5] for row in csv.reader(churn_csv.open()) if row[0] != "Customer ID"}
    assert {labels[e["request"]["customer_id"]] for e in examples} == {"no", "yes"}
    for e in examples:
        r = e["request"]
        assert isinstance(r["tenure_months"], int) and isinstance(r["monthly_charges"], float)
        assert None not in r.values() and set(r) <= {*features, "customer_id"}


@pytest.fixture
def fleet_csv(tmp_path) -> Path:
    """A regression target that goes negative; headers with spaces, parentheses and a degree sign."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(200):
        engine = round(float(rng.uniform(1.0, 6.0)), 1)
        temperature = round(float(rng.uniform(-30, 35)), 1)
        fuel = ["petrol", "diesel", "electric"][i % 3]
        balance = round(12 * engine - 40 + 0.3 * temperature + float(rng.normal(0, 5)), 2)
        rows.append([engine, temperature, fuel, balance])
    return write_csv(tmp_path / "fleet-balance.csv",
                     ["Engine Size(L)", "Temperature (°C)", "Fuel Type", "Net Balance (kEUR)"], rows)


def test_a_regression_with_a_negative_target_and_renamed_headers(fleet_csv, tmp_path):
    data = fleet_csv
    targets = [float(row[3]) for row in list(csv.reader(data.open()))[1:]]
    summary = init_spec(data, "Net Balance (kEUR)", specs_dir=tmp_path / "specs")
    assert summary["task"] == "regression" and summary["model"] == "fleet-balance"
    raw, text, spec = read_spec(tmp_path / "specs" / "fleet-balance")
    t = raw["target"]
    assert t["name"] == "net_balance_keur" and t["unit"] == "kEUR" and t["interval"] == 0.9
    assert t["bounds"][0] < min(targets) < 0 < max(targets) < t["bounds"][1] and "low_inclusive" not in t
    assert raw["data"]["columns"] == {"Net Balance (kEUR)": "net_balance_keur", "Engine Size(L)": "engine_size_l",
                                      "Temperature (°C)": "temperature_c", "Fuel Type": "fuel_type"}
    features = by_name(raw, "features")
    assert features["engine_size_l"]["unit"] == "L" and features["engine_size_l"]["bounds"][0] == 0
    assert features["engine_size_l"]["low_inclusive"] is True
    low, high = features["temperature_c"]["bounds"]
    assert low < -30 and high > 35 and "low_inclusive" not in features["temperature_c"]
    assert features["fuel_type"]["kind"] == "categorical"
    assert raw["holdout"] == {"fraction": 0.2}  # no stratify, no group_by
    assert "rows with identical features are kept on one side automatically" in text
    sd = float(np.std(targets, ddof=1))
    assert raw["gate"] == {"metric": "rmse", "tolerance": float(f"{0.01 * sd:.3g}"), "coverage_min": 0.87,
                           "coverage_max": 0.93}
    assert raw["regression"] == {"strategy": "plain"} and '"log_baseline" with regimes' in text
    assert "threshold" not in raw and "labels" not in t and "positive" not in t
    assert spec.regression.strategy == "plain" and spec.target.bounds[0] < 0
    assert len(read_base(spec).frame) == 200
    examples = json.loads((tmp_path / "specs" / "fleet-balance" / EXAMPLES_FILE).read_text())
    assert len(examples) == 3 and all(set(e["request"]) == set(features) for e in examples)


def test_a_date_and_an_id_column_are_passthrough_and_long_text_is_left_out(tmp_path):
    rng = np.random.default_rng(3)
    start = date(2021, 1, 1)
    rows = []
    for i in range(120):
        amount = round(float(rng.uniform(5, 500)), 2)
        category = ["books", "toys", "garden", "tools"][i % 4]
        returned = int(rng.random() < 0.1 + (amount > 400) * 0.5)
        note = f"customer wrote a long message about order {i} " + "and its delivery " * 4
        rows.append([1000 + i, (start + timedelta(days=3 * i)).isoformat(), amount, category, note, returned])
    data = write_csv(tmp_path / "orders.csv", ["Order ID", "Order Date", "Amount", "Category", "Notes", "Returned"],
                     rows)
    summary = init_spec(data, "Returned", specs_dir=tmp_path / "specs")
    assert summary["features"] == {"numeric": ["amount"], "categorical": ["category"]}
    assert summary["passthrough"] == {"order_id": "integer", "order_date": "string"}
    assert list(summary["left_out"]) == ["Notes"]
    raw, text, spec = read_spec(tmp_path / "specs" / "orders")
    assert raw["task"] == "binary" and raw["target"]["labels"] == ["0", "1"] and raw["target"]["positive"] == "1"
    passthrough = by_name(raw, "passthrough")
    low, high = passthrough["order_id"]["bounds"]
    assert passthrough["order_id"]["kind"] == "integer" and low <= 1000 and high >= 1119
    assert passthrough["order_date"] == {"name": "order_date", "kind": "string"}
    assert "an identifier" in comments_above(text, "passthrough", "order_id")[0]
    assert "dates" in comments_above(text, "passthrough", "order_date")[0]
    assert "notes" not in by_name(raw, "features") and "notes" not in passthrough
    assert "Notes" not in raw["data"]["columns"]  # a column left out needs no rename
    left = [line for line in text.splitlines() if line.startswith("# left out")]
    assert len(left) == 1 and '"Notes"' in left[0] and "64 characters" in left[0]
    assert [p.name for p in spec.passthrough] == ["order_id", "order_date"]
    assert len(read_base(spec).frame) == 120
    examples = json.loads((tmp_path / "specs" / "orders" / EXAMPLES_FILE).read_text())
    assert all(isinstance(e["request"]["order_id"], int) and isinstance(e["request"]["order_date"], str)
               for e in examples)


def test_a_zero_that_looks_like_not_measured_is_pointed_out_not_changed(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(200):
        glucose = int(rng.integers(60, 200))
        insulin = 0 if i % 10 < 3 else int(rng.integers(40, 300))  # 30% zeros, the others far from 0
        balance = 0 if i % 10 == 0 else round(float(rng.exponential(50)) + 0.01, 2)  # zeros among small values
        skin = "?" if i in (4, 77, 150) else int(rng.integers(7, 60))  # three cells that are no number
        rows.append([glucose, insulin, balance, skin, int(glucose + rng.normal(0, 20) > 140)])
    data = write_csv(tmp_path / "clinic.csv", ["Glucose", "Insulin", "Balance", "Skin", "Outcome"], rows)
    summary = init_spec(data, "Outcome", specs_dir=tmp_path / "specs")
    raw, text, spec = read_spec(tmp_path / "specs" / "clinic")
    features = by_name(raw, "features")
    insulin = features["insulin"]
    assert "missing_values" not in insulin and "required" not in insulin  # proposed, not changed
    proposal = [c for c in comments_above(text, "features", "insulin") if "missing_values" in c]
    assert len(proposal) == 1 and "0 in 60 rows (30%)" in proposal[0]
    assert "add missing_values = [0] and required = false" in proposal[0]
    for name in ("glucose", "balance"):
        assert not any("missing_values" in c for c in comments_above(text, "features", name)), name
    assert any(r.startswith("insulin: 0 in 60 rows") for r in summary["review"])
    # a few cells that are no number: still numeric, their rows the job's bad rows (dropped, said in a comment)
    assert features["skin"]["kind"] == "numeric"
    assert any('3 cells are no number ("?")' in c for c in comments_above(text, "features", "skin"))
    base = read_base(spec)
    assert base.intake["bad_rows"] == 3 and len(base.frame) == 197


def test_it_never_overwrites_a_spec_folder(churn_csv, tmp_path):
    specs = tmp_path / "specs"
    (specs / "churn").mkdir(parents=True)
    (specs / "churn" / "notes.txt").write_text("mine")
    with pytest.raises(InitError, match="already exists; nothing written"):
        init_spec(churn_csv, "Churned", name="churn", specs_dir=specs)
    assert [p.name for p in (specs / "churn").iterdir()] == ["notes.txt"]
    proc = run_module("init", "--csv", str(churn_csv), "--target", "Churned", "--name", "churn",
                      "--specs-dir", str(specs), timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"python -m retrain_job init: {specs / 'churn'} already exists; nothing "
                                        "written (choose another --name, or remove the folder)"]
    assert (specs / "churn" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("target", "flags", "says"), [
    ("Nope", {}, 'no column "Nope" for --target'),
    ("Churned", {"task": "regression"}, '--task regression: target "Churned" has values that are no number'),
    ("Plan", {"task": "binary"}, "has 3 distinct values, not 2"),
    ("Churned", {"name": "Bad Name"}, "a model name is 2-32 lower-case letters"),
])
def test_what_cannot_be_written_is_one_line_and_writes_nothing(churn_csv, tmp_path, target, flags, says):
    with pytest.raises(InitError) as err:
        init_spec(churn_csv, target, **flags, specs_dir=tmp_path / "specs")
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "specs").exists()


def test_the_cli_writes_a_spec_the_job_trains_without_a_hand_edit(churn_csv, tmp_path):
    specs, store = tmp_path / "specs", tmp_path / "store"
    proc = run_module("init", "--csv", str(churn_csv), "--target", "Churned", "--name", "churn",
                      "--specs-dir", str(specs), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {
        "command": "init", "model": "churn", "decision": "written", "path": str(specs / "churn"), "task": "binary",
        "target": "churned", "features": {"numeric": ["tenure_months", "monthly_charges"],
                                          "categorical": ["plan", "region"]},
        "passthrough": {"customer_id": "string"}, "left_out": {}, "rows": 150, "usable_rows": 144,
        "review": ["customer_id: looks personal (a person's identifier): logged hashed (erase a person's rows by it)"],
        "files": ["spec.toml", "examples.json", "Customer Churn.csv", "DATA.md"]}
    assert sorted(p.name for p in (specs / "churn").iterdir()) == sorted(summary["files"])
    raw, _, spec = read_spec(specs / "churn")
    assert spec.name == "churn" and raw["data"]["sha256"] == spec.data.sha256
    # the lead's job, as `make model` runs it, on the spec exactly as written
    job = run_module("--store", str(store), "--model", "churn", "--dry-run", env={"SPECS_DIR": str(specs)})
    assert job.returncode == 0, job.stderr[-3000:]
    result = json.loads(job.stdout.strip().splitlines()[-1])
    assert result["decision"] == "dry-run" and result["model"] == "churn", result


def test_a_regression_spec_trains_without_a_hand_edit(fleet_csv, tmp_path):
    specs = tmp_path / "specs"
    proc = run_module("init", "--csv", str(fleet_csv), "--target", "Net Balance (kEUR)", "--specs-dir", str(specs),
                      timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = run_module("--store", str(tmp_path / "store"), "--model", "fleet-balance", "--dry-run",
                     env={"SPECS_DIR": str(specs)})
    result = json.loads(job.stdout.strip().splitlines()[-1])
    assert job.returncode == 0 and result["decision"] == "dry-run", result


def test_field_and_model_names():
    assert snake_case("Engine Size(L)") == "engine_size_l"
    assert snake_case("mean radius") == "mean_radius"
    assert snake_case("CO2 Emissions(g/km)") == "co2_emissions_g_per_km"
    assert snake_case("bodyMass") == "body_mass" and snake_case("pH") == "ph"
    assert snake_case("Temperature (°C)") == "temperature_c" and snake_case("2nd reading") == "_2nd_reading"
    assert model_name("My Data-Set 2024") == "my-data-set-2024" and model_name("2024 sales") == "model-2024-sales"
    assert (nice(87.1, up=True), nice(-32.3, up=False), nice(9900.0, up=True), nice(0.0123, up=True)) == (
        88, -33, 9900, 0.013)


def test_columns_that_look_personal_are_proposed_a_log_policy_to_review(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(80):
        income = round(float(rng.uniform(10, 200)), 1)
        rows.append([f"person{i}@example.org", f"+44 20 7946 {i:04d}", f"Name{i} Surname{i}",
                     (date(1950, 1, 1) + timedelta(days=97 * i)).isoformat(), f"called about the loan number {i}",
                     1000 + i, f"app-{i:05d}", income, ["north", "south"][i % 2], int(income > 100)])
    data = write_csv(tmp_path / "loans.csv", ["Email", "Contact", "Full Name", "Date of Birth", "Remarks", "Row",
                                              "Applicant Ref", "Income", "Region", "Approved"], rows)
    init_spec(data, "Approved", specs_dir=tmp_path / "specs")
    raw, text, spec = read_spec(tmp_path / "specs" / "loans")
    passthrough = by_name(raw, "passthrough")
    assert {name: p.get("log") for name, p in passthrough.items()} == {
        "email": "hash", "contact": "hash", "full_name": "drop", "date_of_birth": "drop", "remarks": "drop",
        "row": None, "applicant_ref": "hash"}
    for name, why in (("email", "email addresses"), ("contact", "phone numbers"), ("full_name", "names"),
                      ("date_of_birth", "dates of birth"), ("remarks", "free text"),
                      ("applicant_ref", "a person's identifier")):
        above = comments_above(text, "passthrough", name)
        assert any(line.startswith(f"# review: looks personal ({why})") for line in above), (name, above)
    assert all(f.log == "keep" for f in spec.features) and spec.retrain.from_feedback  # the spec loads as written
