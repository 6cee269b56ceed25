"""Thin Prefect @task wrappers around the ods library: retries, cache keys, logging, artifacts."""

# pymilvus configures logging with logging.config.dictConfig when first imported, which flushes and
# closes every existing handler, Prefect's API log handler included; inside a running flow that stalls
# for seconds or deadlocks with Prefect's log-shipping thread. Importing it with the tasks, before any
# flow runs, makes that happen while nothing is logging. (A library import: nothing connects.)
import pymilvus  # noqa: F401
