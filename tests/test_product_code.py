"""Product code knows no model: penguins and vehicles live only in their specs, examples, data and the tests."""
from __future__ import annotations

import re
import subprocess

from testbed.servers import REPO

PRODUCT = ("shared", "function", "retrain_job", "scripts")
# words of either model's domain (field names, labels, categories) that generic code has no reason to say
DOMAIN = re.compile(r"penguin|species|island|bill_|flipper|body_mass|adelie|gentoo|chinstrap|torgersen|biscoe|"
                    r"vehicle|fuel|co2|engine_size|cylinder|transmission|\bmpg\b", re.IGNORECASE)


def _tracked(*folders: str) -> list[str]:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *folders], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    return [f for f in files if f.endswith((".py", ".json", ".toml", ".txt", ".yaml", ".sh"))
            and "/shipped_model/" not in f and not f.endswith(".lock") and (REPO / f).exists()]


def test_product_code_names_no_model():
    hits = [f"{path}:{n}: {line.strip()}" for path in _tracked(*PRODUCT)
            for n, line in enumerate((REPO / path).read_text().splitlines(), start=1) if DOMAIN.search(line)]
    assert not hits, "\n".join(hits)


def test_the_check_would_see_a_model_name(tmp_path):
    assert DOMAIN.search('row["body_mass_g"]') and DOMAIN.search("Fuel type") and not DOMAIN.search("predict")
