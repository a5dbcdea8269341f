"""CSV bytes from request-shaped rows, as labelled-data files are uploaded to the store."""
from __future__ import annotations

import csv
import io


def csv_bytes(rows: list[dict]) -> bytes:
    """A CSV with a header from the first row's keys."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
