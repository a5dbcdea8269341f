"""Helpers the tests import (fixtures stay in the conftest.py files).

- `http`: `post`, `get` over real HTTP, and `NOT_A_ROUTE`, a path deliberately not served.
- `bundles`: `FAST_PARAMS`, `STABLE`, `as_version`, `publish`: trained bundles written to a store.
- `threads`: `run_threads`, the one "run N threads at once and collect their failures" helper.
- `proxy`: `DelayProxy`, a TCP proxy that makes storage slow on demand.
- `tally`: `Tally` and the terminal-summary table of the reliability suite.
- `jobs`: `run_job`, the retraining job as a real process.
- `kinds`: real binary and identity-scale regression bundles, trained with XGBoost and assembled as training does.

The repository root is `testbed.servers.REPO`.
"""
