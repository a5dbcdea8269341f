"""The penguin spec's example requests with their expected species, the rows most tests send."""
from __future__ import annotations

from shared.spec import load_spec

SEED_EXAMPLES: tuple[tuple[dict, str], ...] = tuple((e["request"], e["expected"])
                                                    for e in load_spec("penguins").examples())
