"""The Prefect flows (nightly, retrain, backfill), their tasks, and what makes them safe to schedule:
retries, locks, secrets, run reports and scale-out. Deployments are declared in prefect.yaml."""
