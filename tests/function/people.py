"""A model of people: a spec whose log policies hash, bucket and drop fields, and a bundle it serves.

The bundle is `tests.support.kinds.binary_bundle` (x1, x2, colour; target `approved`) with two passthrough fields
added to its contract, `customer_id` and `email`. The spec logs `x1` bucketed (width 5), drops `x2` and `email`,
and hashes `colour` and `customer_id`; it does not retrain from feedback, as a spec changing a feature's logged
value must say. `PEOPLE` are requests whose raw values are unique strings, so a search of any sink for them is
proof that no raw value was written.
"""
from __future__ import annotations

from pathlib import Path

from shared.bundle import Bundle, make_bundle
from shared.store import LocalStore
from tests.support.bundles import publish
from tests.support.kinds import BINARY_VERSION, binary_bundle

NAME = "applicants"
SPEC = f"""
name = "{NAME}"
task = "binary"
default = true

[target]
name = "approved"
labels = ["no", "yes"]
positive = "yes"

[[features]]
name = "x1"
kind = "numeric"
bounds = [-100.0, 100.0]
log = "bucket"
bucket_width = 5

[[features]]
name = "x2"
kind = "numeric"
bounds = [-100.0, 100.0]
required = false
log = "drop"

[[features]]
name = "colour"
kind = "categorical"
log = "hash"

[[passthrough]]
name = "customer_id"
kind = "string"
log = "hash"

[[passthrough]]
name = "email"
kind = "string"
log = "drop"

[retrain]
from_feedback = false

[data]
file = "applicants.csv"
sha256 = "{'0' * 64}"

[gate]
tolerance = 0.01
"""
# unique raw values: none of them may appear in any sink
PEOPLE = [
    {"x1": 7.3456, "x2": 3.2109, "colour": "red", "customer_id": "cust-ALICE-7731", "email": "alice.7731@example.org"},
    {"x1": 2.5432, "x2": -1.8765, "colour": "blue", "customer_id": "cust-BOB-4412", "email": "bob.4412@example.org"},
    {"x1": 9.8712, "colour": "green", "customer_id": "cust-CAROL-9020", "email": "carol.9020@example.org"},
]
RAW = ("7.3456", "3.2109", "2.5432", "1.8765", "9.8712", "ALICE", "BOB", "CAROL", "example.org")
BUCKETS = (5.0, 0.0, 5.0)  # x1's bin of each person, as logged


def write_spec(specs: Path) -> Path:
    """The spec in a scratch specs folder (SPECS_DIR); its folder."""
    folder = specs / NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.toml").write_text(SPEC)
    return folder


def bundle() -> Bundle:
    """The binary bundle, its contract taking the two passthrough fields."""
    base = binary_bundle()
    sections = {k: v for k, v in base.manifest.items() if k not in {"format", "version", "created_at", "files"}}
    contract = dict(sections["contract"])
    contract["passthrough"] = [{"name": "customer_id", "kind": "string", "low": None, "high": None},
                               {"name": "email", "kind": "string", "low": None, "high": None}]
    return make_bundle(BINARY_VERSION, base.files, **{**sections, "contract": contract})


def scratch(root: Path) -> tuple[Path, LocalStore]:
    """A specs folder holding the spec, and a store serving the bundle under its name."""
    specs, store = root / "specs", LocalStore(root / "bucket")
    write_spec(specs)
    publish(store, bundle(), BINARY_VERSION, model=NAME)
    return specs, store


def server_env(specs: Path, store: LocalStore) -> dict[str, str]:
    """The function's environment: the scratch spec served, logging to the local sink."""
    return {"SPECS_DIR": str(specs), "MODEL_STORE": str(store.root), "MODELS": NAME, "DEFAULT_MODEL": NAME,
            "LOG_TO_STORE": "1", "POINTER_TTL_S": "60"}
