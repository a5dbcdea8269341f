"""The `monitor` mode: live quality per version and role from feedback, the canary judged on it."""
