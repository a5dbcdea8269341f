"""Real local stand-ins on 127.0.0.1 for tests, the benchmark and load runs: GCS emulator, function, Monitoring."""
