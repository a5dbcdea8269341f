"""Data from specs: the checksummed base sets, labelled CSV files judged by the request rules, serving inputs."""
from __future__ import annotations

import shutil

import pytest

from retrain_job.data.labelled import (
    FEEDBACK_ID,
    FEEDBACK_KEY,
    DataError,
    columns,
    intake_contract,
    load_base,
    load_labelled,
    parse_labelled_csv,
    parse_labelled_records,
    read_base,
)
from shared.spec import SpecError, load_spec
from tests.support.csv_files import csv_bytes


def test_base_sets_are_read_renamed_and_converted(base_data, co2_data, co2_spec):
    assert len(base_data) == 342 and base_data["sex"].isna().sum() == 9  # an optional field stays missing
    assert base_data["year"].map(type).eq(int).all() and base_data["source"].eq("penguins.csv").all()
    assert len(co2_data) == 7385 and list(co2_data.columns) == [*columns(co2_spec), "source"]
    assert co2_data["engine_size_l"].dtype == float and co2_data["co2_emissions_g_per_km"].between(96, 522).all()
    assert (co2_data["model"] == "S60 T5 ").any()  # passthrough text as in the file
    assert co2_data.iloc[0][["make", "model", "fuel_type", "co2_emissions_g_per_km"]].tolist() == [
        "ACURA", "ILX", "Z", 196.0]


def test_a_data_file_that_fails_its_checksum_is_refused(tmp_path):
    folder = tmp_path / "penguins"
    shutil.copytree(load_spec("penguins").folder, folder)
    (folder / "penguins.csv").write_bytes((folder / "penguins.csv").read_bytes() + b"Adelie,Dream,1,1,1,1,,2009\n")
    spec = load_spec("penguins", tmp_path)
    with pytest.raises(SpecError, match="sha256"):
        load_base(spec)


def _co2_rows(co2_data, n: int) -> list[dict]:
    rows = co2_data.drop(columns=["source"]).sample(n=n, random_state=3).to_dict("records")
    return [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]


def test_co2_labelled_rows_are_judged_by_the_request_rules(local_store, co2_spec, co2_data):
    good = _co2_rows(co2_data, 12)
    good[0] = {**good[0], "make": "Rivian"}  # a make never seen: accepted, that is how a model learns it
    good[1] = {**good[1], "make": "rivian ", "fuel_consumption_city_l_per_100km": ""}  # same make; optional left out
    good[2] = {**good[2], "make": "acura"}  # a known make in another case: its canonical spelling
    bad = [{**good[3], "engine_size_l": "-1"}, {**good[4], "cylinders": "four"},
           {**good[5], "co2_emissions_g_per_km": "2000"}, {**good[6], "make": ""},
           {**good[7], "co2_emissions_g_per_km": ""}, {**good[8], "engine_size_l": "1998", "cylinders": "inf"}]
    local_store.write("data/labelled/co2-batch.csv", csv_bytes(good[:3] + good[9:] + bad))
    data = load_labelled(local_store, co2_spec, co2_data)
    assert len(data.rows) == 6 and data.rejected_count == 6
    assert data.rows["make"].tolist()[:3] == ["Rivian", "Rivian", "ACURA"]
    assert data.rows["fuel_consumption_city_l_per_100km"].isna().tolist()[:3] == [False, True, False]
    errors = {r["line"]: r["errors"] for r in data.rejected}
    assert errors[8] == {"engine_size_l": ["must be greater than 0.3 and at most 10 L"]}
    assert errors[9] == {"cylinders": ["must be a number"]}
    assert errors[10] == {"co2_emissions_g_per_km": ["must be greater than 0 and at most 1500 g/km"]}
    assert errors[11] == {"make": ["Missing data for required field."]}
    assert errors[12] == {"co2_emissions_g_per_km": ["Missing data for required field."]}
    assert errors[13]["engine_size_l"] == ["must be greater than 0.3 and at most 10 L; 1998 looks like cm3 (1.998 L)"]
    assert errors[13]["cylinders"] == ["must be a finite number"]
    assert "engine_size_l='1998'" in data.rejected[-1]["reason"]


def test_penguin_labelled_rows_bad_labels_and_duplicate_files(local_store, penguins_spec, base_data):
    rows = base_data.drop(columns=["source"]).head(5).to_dict("records")
    rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]
    rows[1]["species"] = "emperor"
    rows[2]["species"] = "gentoo"  # any case
    rows[3]["year"] = "1850"
    body = csv_bytes(rows)
    local_store.write("data/labelled/a.csv", body)
    local_store.write("data/labelled/b.csv", body)  # the same content: counted once
    local_store.write("data/labelled/notes.txt", b"ignored")
    local_store.write("data/labelled/broken.csv", b"species\nAdelie\n")
    data = load_labelled(local_store, penguins_spec, base_data)
    assert len(data.rows) == 3 and data.rows["species"].tolist() == ["Adelie", "Gentoo", "Adelie"]
    reasons = [r["reason"] for r in data.rejected]
    assert any("species='emperor': must be one of Adelie, Chinstrap, Gentoo (any case)" in r for r in reasons)
    assert any("year='1850': must be between 1900 and 2100" in r for r in reasons)
    assert any(r.startswith("missing columns") for r in reasons)
    assert [f.get("duplicate_of") for f in data.files if f["key"].endswith(("a.csv", "b.csv"))] == [
        None, "data/labelled/a.csv"]


def test_feedback_records_are_judged_by_the_rules_of_labelled_csv_files(local_store, penguins_spec, base_data):
    """Records as `feedback.labelled_rows` gives them (logged request values and the truth) get the same verdicts
    and messages as the same rows in a labelled CSV file."""
    rows = base_data.drop(columns=["source"]).head(9).to_dict("records")
    changes = [{"body_mass_g": -5.0}, {"species": "Emperor"}, {"bill_depth_mm": "x"}, {"year": 1850},
               {"year": 2008.0},  # an integer field decoded from a tensor: accepted as 2008
               {"sex": "unknown"},  # a level never seen: accepted, that is how a model learns it
               {"species": None}, {"island": None}, {"species": "gentoo"}]
    records = [{**row, **change} for row, change in zip(rows, changes)]
    contract = intake_contract(penguins_spec, base_data)
    fed = [{**r, FEEDBACK_ID: f"req-{i}", "note": "not a request field"} for i, r in enumerate(records)]
    good, bad = parse_labelled_records(fed, FEEDBACK_KEY, penguins_spec, contract, id_name=FEEDBACK_ID)
    text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in records]
    csv_good, csv_bad = parse_labelled_csv(csv_bytes(text), "batch.csv", penguins_spec, contract)
    assert [b["errors"] for b in bad] == [b["errors"] for b in csv_bad] and len(bad) == 6
    assert [b["id"] for b in bad] == ["req-0", "req-1", "req-2", "req-3", "req-6", "req-7"]
    assert bad[0]["reason"] == "body_mass_g=-5.0: must be greater than 500 and at most 50000 g"
    assert bad[4]["errors"] == {"species": ["Missing data for required field."]}
    assert good.drop(columns="source").equals(csv_good.drop(columns="source"))
    assert good["year"].tolist() == [2008, 2007, 2007] and good["sex"].tolist()[1] == "unknown"
    assert good["species"].tolist()[2] == "Gentoo" and set(good["source"]) == {FEEDBACK_KEY}


def test_feedback_joins_the_labelled_rows_as_a_pseudo_file(local_store, penguins_spec, base_data):
    rows = base_data.drop(columns=["source"]).head(4).to_dict("records")
    local_store.write("data/labelled/a.csv", csv_bytes([{k: "" if v is None else v for k, v in r.items()}
                                                         for r in rows[:2]]))
    fed = [{**rows[2], "sex": "UNKNOWN", FEEDBACK_ID: "r-0"}, {**rows[3], "body_mass_g": 1e6, FEEDBACK_ID: "r-1"}]
    local_store.write("data/labelled/b.csv", csv_bytes([{**rows[0], "sex": "unknown"}]))
    data = load_labelled(local_store, penguins_spec, base_data, feedback=fed)
    assert [f["key"] for f in data.files] == ["data/labelled/a.csv", "data/labelled/b.csv", FEEDBACK_KEY]
    entry = data.files[-1]
    assert (entry["rows"], entry["rejected"], entry["read"]) == (1, 1, 2) and len(entry["sha256"]) == 64
    assert len(data.rows) == 4 and data.rows["source"].tolist()[-1] == FEEDBACK_KEY
    assert len(data.from_files) == 3 and FEEDBACK_KEY not in data.from_files["source"].tolist()  # drift: not twice
    assert data.rows["sex"].tolist()[-2:] == ["unknown", "unknown"]  # a new level: the first spelling seen
    assert data.rejected == [{"file": FEEDBACK_KEY, "id": "r-1", "reason": data.rejected[0]["reason"],
                              "errors": {"body_mass_g": ["must be greater than 500 and at most 50000 g"]},
                              "values": {"body_mass_g": 1e6}}]
    assert load_labelled(local_store, penguins_spec, base_data).files[-1]["key"] != FEEDBACK_KEY  # none read


# ---- the base data: bad rows, labels, data rules ----------------------------------------------------------------

def _penguins_with(tmp_path, edit_rows=None, spec_edit: str = "", swap=()):
    """A copy of the penguins spec folder whose CSV has some rows edited (line number -> {column: text}), its
    checksum updated, `spec_edit` appended to [data] and each (old, new) text of `swap` replaced in the spec;
    the spec read from the copy."""
    import csv as csv_module
    import hashlib
    import io

    folder = tmp_path / "penguins"
    shutil.copytree(load_spec("penguins").folder, folder)
    data = folder / "penguins.csv"
    rows = list(csv_module.DictReader(io.StringIO(data.read_text())))
    for line, changes in (edit_rows or {}).items():
        rows[line - 2].update(changes)
    out = io.StringIO()
    writer = csv_module.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data.write_text(out.getvalue())
    text = (folder / "spec.toml").read_text()
    text = text.replace('sha256 = "f204db2c753b0937caac3cb35258562c14f073e4bbc76be24b4c51ce22767a93"',
                        f'sha256 = "{hashlib.sha256(data.read_bytes()).hexdigest()}"\n{spec_edit}')
    for old, new in swap:
        assert old in text, old
        text = text.replace(old, new)
    (folder / "spec.toml").write_text(text)
    return load_spec("penguins", tmp_path)


def test_bad_base_rows_refuse_the_data_set_naming_field_count_and_lines(tmp_path):
    spec = _penguins_with(tmp_path, {6: {"body_mass_g": "0"}, 9: {"body_mass_g": "-1"},
                                     12: {"flipper_length_mm": "n/a"}})
    with pytest.raises(DataError) as err:
        read_base(spec)
    message = str(err.value)
    assert "3 bad row(s) ([data] bad_rows = \"reject\")" in message
    assert "body_mass_g: must be greater than 500 and at most 50000 g - 2 of 342 rows, e.g. line 6: '0', line 9: " \
           "'-1'" in message
    assert "flipper_length_mm: must be a number - 1 of 342 rows, e.g. line 12: 'n/a'" in message


def test_bad_base_rows_are_dropped_up_to_the_share_the_spec_allows(tmp_path):
    spec = _penguins_with(tmp_path, {6: {"body_mass_g": "0"}, 9: {"bill_depth_mm": "x"}},
                          'bad_rows = "drop"\nmax_bad_share = 0.01')
    base = read_base(spec)
    assert len(base.frame) == 340 and base.intake["bad_rows"] == 2 and base.intake["dropped_missing_required"] == 2
    assert base.intake["bad_rows_by_field"] == [
        "body_mass_g: must be greater than 500 and at most 50000 g - 1 of 342 rows, e.g. line 6: '0'",
        "bill_depth_mm: must be a number - 1 of 342 rows, e.g. line 9: 'x'"]
    strict = _penguins_with(tmp_path / "strict", {6: {"body_mass_g": "0"}, 9: {"bill_depth_mm": "x"}},
                            'bad_rows = "drop"\nmax_bad_share = 0.005')
    with pytest.raises(DataError, match=r"0.6% of the rows, more than \[data\] max_bad_share = 0.005"):
        read_base(strict)


def test_labels_spelled_otherwise_than_in_the_data_are_named_before_training(tmp_path):
    spec = _penguins_with(tmp_path, swap=[('labels = ["Adelie", "Chinstrap", "Gentoo"]', 'labels = ["0", "1", "2"]')])
    with pytest.raises(DataError) as err:
        read_base(spec)
    assert str(err.value).startswith("target 'species': the spec's labels ['0', '1', '2'] do not match the values "
                                     "in the data: 'Adelie' (151 rows), 'Gentoo' (123 rows), 'Chinstrap' (68 rows)")


def test_values_that_mean_missing_are_trained_as_missing(tmp_path):
    spec = _penguins_with(tmp_path, {6: {"bill_length_mm": "0"}, 7: {"bill_length_mm": "0.0"}}, swap=[
        ('name = "bill_length_mm"\nkind = "numeric"',
         'name = "bill_length_mm"\nkind = "numeric"\nrequired = false\nmissing_values = [0]'),
        ('required = ["bill_length_mm", ', 'required = [')])
    frame = read_base(spec).frame
    assert frame["bill_length_mm"].isna().sum() == 2 and len(frame) == 342  # the two zeros, kept as missing
