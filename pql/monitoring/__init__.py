"""Monitoring of the live pipeline: drift of features and scores against the model's training data."""
