"""Deployable Prefect flows, one per file; flows only compose tasks."""
