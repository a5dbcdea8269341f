"""The retraining job: data, training, quality gate, publishing, drift report and metrics."""
