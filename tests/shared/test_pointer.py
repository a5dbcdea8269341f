"""The serving pointer's shadow: written and read back, and pointers written before shadows existed."""
from __future__ import annotations

import json

import pytest

from shared.pointer import DEFAULT_SHADOW_PERCENT, ServingPointer, read_pointer, write_pointer


def test_shadow_round_trips_through_the_store(local_store):
    pointer = ServingPointer("v2", ("v1",), canary="v3", canary_percent=5.0, shadow="v4", shadow_percent=25.0).touched()
    write_pointer(local_store, "penguins", pointer, 0)
    read, generation = read_pointer(local_store, "penguins")
    assert read == pointer and generation > 0
    assert read.named() == {"v1", "v2", "v3", "v4"}


def test_a_pointer_from_before_shadows_reads_as_one_without_a_shadow():
    old = json.dumps({"stable": "v2", "previous": ["v1"], "canary": None, "canary_percent": 0.0,
                      "updated_at": "2026-11-01T00:00:00+00:00"}).encode()
    pointer = ServingPointer.from_bytes(old)
    assert (pointer.shadow, pointer.shadow_percent) == (None, DEFAULT_SHADOW_PERCENT)
    assert pointer.named() == {"v1", "v2"}
    assert json.loads(pointer.to_bytes())["shadow"] is None  # written back, it says so


@pytest.mark.parametrize("percent", [0.0, -1.0, 100.5])
def test_a_shadow_share_outside_its_range_is_refused(percent):
    with pytest.raises(ValueError, match="shadow_percent"):
        ServingPointer("v1", shadow="v2", shadow_percent=percent)
