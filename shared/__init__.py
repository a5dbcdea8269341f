"""Code common to the serving function and the retraining job: contract, bundle, store, predictor."""
