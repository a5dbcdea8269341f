"""The Terraform configuration parsed once per module, for every infrastructure test."""
from __future__ import annotations

import pytest

from tests.infra.test_terraform import MODULE, TF, _merged


@pytest.fixture(scope="module")
def tf() -> dict:
    """The root module: what the models share, and the call of modules/model."""
    return _merged(TF)


@pytest.fixture(scope="module")
def mod() -> dict:
    """terraform/modules/model: one model's resources."""
    return _merged(MODULE)
