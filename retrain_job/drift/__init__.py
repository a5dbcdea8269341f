"""Drift of served inputs, predictions and attributions against the training reference: small named statistics."""
