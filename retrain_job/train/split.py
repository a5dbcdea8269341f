"""The frozen holdout the gate compares models on, and the groups that keep related rows on one side.

The holdout is a seeded share of the base data alone, so it stays the same across runs while labelled
rows arrive: stratified by class when the spec says so (a classifier's default), else drawn by whole
groups for a regressor or when the spec names `[holdout] group_by` fields, else at random. A group is a
connected component of rows that share the normalised `group_by` key (stripped, upper-cased) or have
identical feature values: the same thing recorded twice, or under two names, never straddles the split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import train_test_split

from retrain_job.data.labelled import feature_names
from shared.spec import ModelSpec

SEED = 20240601


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value).strip().upper()


def feature_keys(df: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """One string per row: its feature values, normalised (rows with equal keys are the same input)."""
    names = feature_names(spec)
    return np.array(["\x1f".join(map(_text, values)) for values in df[names].itertuples(index=False)], dtype=object)


def group_ids(df: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Each row's group (0..G-1, numbered by first appearance): rows joined by a group_by key or equal features."""
    n = len(df)
    keys: dict[str, int] = {}
    edges_from, edges_to = [], []

    def link(row: int, key: str) -> None:
        edges_from.append(row)
        edges_to.append(n + keys.setdefault(key, len(keys)))

    features = feature_keys(df, spec)
    by = list(spec.holdout.group_by)
    names = df[by].itertuples(index=False) if by else ((),) * n
    for row, (values, feature_key) in enumerate(zip(names, features)):
        texts = [_text(v) for v in values]
        if by and all(texts):  # a row lacking a group_by value is joined only by its features
            link(row, "g\x1f" + "\x1f".join(texts))
        link(row, "f\x1f" + feature_key)
    size = n + len(keys)
    graph = coo_matrix((np.ones(len(edges_from)), (edges_from, edges_to)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return pd.factorize(labels[:n])[0]


def grouped_mask(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of whole groups, taken in a seeded random order while their total stays within the fraction."""
    rng = np.random.default_rng(seed)
    unique, sizes = np.unique(groups, return_counts=True)
    order = rng.permutation(len(unique))
    taken = unique[order][np.cumsum(sizes[order]) <= fraction * len(groups) + 0.5]
    return np.isin(groups, taken)


def group_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k test masks of whole groups, the groups dealt in a seeded order to the fold with fewest rows so far."""
    rng = np.random.default_rng(seed)
    unique, sizes = np.unique(groups, return_counts=True)
    fold_of = np.empty(len(unique), dtype=int)
    load = np.zeros(k)
    for i in rng.permutation(len(unique)):
        fold_of[i] = int(np.argmin(load))
        load[fold_of[i]] += sizes[i]
    row_fold = fold_of[np.searchsorted(unique, groups)]
    return [row_fold == f for f in range(k)]


@dataclass(frozen=True)
class Holdout:
    """Which base rows are held out, each base row's group (None unless grouped), and how the split was drawn."""

    mask: np.ndarray
    groups: np.ndarray | None
    info: dict


def frozen_holdout(base: pd.DataFrame, spec: ModelSpec, seed: int = SEED) -> Holdout:
    """The base data's seeded holdout: stratified, grouped or random, as the spec's [holdout] says."""
    h, n = spec.holdout, len(base)
    info: dict = {"fraction": h.fraction, "seed": seed}
    groups = None
    if h.stratify:
        _, test = train_test_split(np.arange(n), test_size=h.fraction, random_state=seed,
                                   stratify=base[spec.target.name])
        mask = np.isin(np.arange(n), test)
        info["method"] = "stratified"
    elif h.group_by or not spec.is_classifier:
        groups = group_ids(base, spec)
        mask = grouped_mask(groups, h.fraction, seed)
        info.update(method="grouped", group_by=list(h.group_by), groups=int(groups.max() + 1),
                    holdout_groups=int(len(np.unique(groups[mask]))),
                    largest_group_rows=int(np.bincount(groups).max()))
    else:
        mask = np.random.default_rng(seed).random(n) < h.fraction
        info["method"] = "random"
    info.update(rows=int(mask.sum()), share=round(float(mask.mean()), 4))
    info.update(leakage(base, mask, spec))
    return Holdout(mask, groups, info)


def leakage(df: pd.DataFrame, held: np.ndarray, spec: ModelSpec) -> dict:
    """How much of the holdout the training rows already show: identical feature rows, identical required inputs."""
    keys = feature_keys(df, spec)
    required = [f.name for f in spec.features if f.required]
    config = np.array(["\x1f".join(map(_text, v)) for v in df[required].itertuples(index=False)], dtype=object)
    if not held.any():
        return {"identical_row_in_train": 0.0, "same_required_inputs_in_train": 0.0}
    return {"identical_row_in_train": _share_seen(keys, held),
            "same_required_inputs_in_train": _share_seen(config, held)}


def _share_seen(keys: np.ndarray, held: np.ndarray) -> float:
    return round(float(pd.Series(keys[held]).isin(set(keys[~held])).mean()), 4)
