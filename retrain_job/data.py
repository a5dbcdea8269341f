"""Training data: the Palmer Penguins base set plus newly labelled rows, as one clean DataFrame."""
from __future__ import annotations

import hashlib

import pandas as pd

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL = ("island", "sex")
LABEL = "species"
COLUMNS = (*NUMERIC, *CATEGORICAL, "year", LABEL)


def load_base() -> pd.DataFrame:
    """The palmerpenguins data set: rows without measurements or island are dropped, missing sex kept."""
    from palmerpenguins import load_penguins  # noqa: PLC0415

    df = load_penguins()
    df = df.dropna(subset=[*NUMERIC, "island", LABEL]).reset_index(drop=True)
    df["source"] = "palmerpenguins"
    return df


def fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows in a canonical order: the same data gives the same fingerprint."""
    canonical = df[list(COLUMNS)].sort_values(list(COLUMNS)).to_csv(index=False, float_format="%.6g")
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_records(df: pd.DataFrame) -> list[dict]:
    """Rows as request-shaped dicts (missing values become None), the input of `shared.features`."""
    frame = df[[*NUMERIC, *CATEGORICAL]].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")
