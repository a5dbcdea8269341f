"""The card's page: every text from a spec escaped, nothing fetched from elsewhere, rendered by Chromium."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from retrain_job.card.build import build_card
from retrain_job.card.render import NOT_STATED, render_card
from retrain_job.card.store import CARD_HTML, card_key
from shared.bundle import read_bundle
from shared.spec import SPEC_FILE, load_spec, parse_spec
from tests.retrain_job.card.conftest import refresh
from tests.support.bundles import STABLE

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_hostile_text_in_a_spec_is_escaped_and_the_page_loads_nothing(both_models):
    spec = load_spec("penguins")
    raw = tomllib.loads((spec.folder / SPEC_FILE).read_text())
    raw.update(title=f"T {HOSTILE}", description=HOSTILE)
    raw["card"] = {"intended_use": HOSTILE, "out_of_scope": [HOSTILE], "owners": [f"{HOSTILE} & co"],
                   "limitations": [HOSTILE]}
    raw["data"].update(source=HOSTILE, licence=HOSTILE)
    card = build_card(parse_spec(raw, spec.folder), read_bundle(both_models, "penguins", STABLE).manifest,
                      generated_at=datetime(2026, 12, 1, tzinfo=UTC))
    page = render_card(card)
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 7 and "&amp; co" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # self-contained
    assert NOT_STATED not in page


def test_a_card_without_purpose_says_not_stated(both_models):
    spec = load_spec("co2")
    raw = tomllib.loads((spec.folder / SPEC_FILE).read_text())
    raw.pop("card")
    page = render_card(build_card(parse_spec(raw, spec.folder), read_bundle(both_models, "co2", STABLE).manifest,
                                  generated_at=datetime(2026, 12, 1, tzinfo=UTC)))
    assert page.count(NOT_STATED) == 4  # intended use, out of scope, owners, limitations
    assert "Not recorded: the manifest records neither the gate" in page


def screenshot(page: Path, shot: Path, width: int = 1200, height: int = 1400) -> Image.Image:
    """The page as headless Chromium draws it (the drift report's test draws its page the same way)."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make system-packages`"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={shot}",
                        page.as_uri()], capture_output=True, timeout=90, check=True)
    return Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")


def test_every_published_version_s_card_renders_in_headless_chromium(both_models, tmp_path):
    for model in ("penguins", "co2"):
        assert refresh(both_models, model)["failed"] == {}
        page = Path(both_models.root) / card_key(model, STABLE, CARD_HTML)
        assert page.stat().st_size < 100_000
        image = screenshot(page, tmp_path / f"{model}.png", height=3200)
        colours = image.getcolors(maxcolors=1_000_000)
        assert image.size == (1200, 3200) and len(colours) > 50  # text, tables and bars, not a blank page
        orange = sum(count for count, rgb in colours if rgb[0] > 220 and 100 < rgb[1] < 160 and rgb[2] < 60)
        assert orange > 500  # the feature-importance bars were drawn
