"""Model specs: one folder per model holding its spec.toml, example requests and data (read by shared.spec)."""
