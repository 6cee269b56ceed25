"""Thin Prefect @task wrappers around the ods library: retries, cache keys, logging, artifacts."""
