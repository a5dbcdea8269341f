"""Drift compares what the logs hold: a reference transformed as the spec's log policies transform served rows.

Served rows are read from the logs, where a field may be bucketed, hashed or dropped (`log` in the spec). The
reference (training rows) and newly labelled rows hold values as sent, so each is transformed the same way before
they are compared. A dropped feature cannot be judged; a hashed one only with the key it was hashed with.
"""
from __future__ import annotations

import pandas as pd

from shared.logline import LogPolicy
from shared.spec import DROP, HASH, ModelSpec

NOT_LOGGED = "not logged (log = drop)"
NO_KEY = "logged hashed (log = hash) and there is no LOG_HASH_KEY here to hash the reference alike"


def unjudged(spec: ModelSpec, hash_key: bytes | None) -> dict[str, str]:
    """The features drift cannot judge, each with the reason."""
    out = {}
    for f in spec.features:
        if f.log == DROP:
            out[f.name] = NOT_LOGGED
        elif f.log == HASH and hash_key is None:
            out[f.name] = NO_KEY
    return out


def as_logged(spec: ModelSpec, frame: pd.DataFrame, hash_key: bytes | None) -> pd.DataFrame:
    """`frame` (values as sent) with every field the spec buckets or hashes as the logs hold it (missing values
    stay missing); fields that cannot be transformed alike are left as they are (and judged by no one)."""
    policies = {name: policy for name, policy in spec.log_policies.items()
                if name in frame and policy[0] != DROP and (policy[0] != HASH or hash_key is not None)}
    if not policies or frame.empty:
        return frame
    policy = LogPolicy(policies, hash_key, {f.name for f in spec.features if f.kind == "categorical"})
    return frame.assign(**{name: frame[name].map(lambda v, name=name: policy.value(name, v) if pd.notna(v) else v)
                           for name in policies})
