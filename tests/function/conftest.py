"""Function test helpers (the fixtures themselves live in tests/conftest.py, shared with infra tests)."""
from tests.conftest import STABLE  # noqa: F401 - re-exported for the function tests
