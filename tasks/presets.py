"""The decorator presets of every flow and task, and the keys of the artifacts they publish: one home.

Results: as JSON, never pickle, and persisted only where something reads them. Prefect's default result
serializer is pickle (``PREFECT_RESULTS_DEFAULT_SERIALIZER``): a failed flow run writes its exception under
``PREFECT_HOME/storage`` (or the configured result storage) with it, whatever path started the run. Naming
the JSON serializer on every decorator means no path (an `ods` command, `python -m deployments.serve`, a
worker) depends on that setting. A serializer named on a decorator also makes Prefect persist results
unless told not to, hence three result presets (``FLOW_RESULTS``, ``NOT_PERSISTED``, ``JSON_RESULTS``).

Retries: transient I/O only (an unreachable store, a timeout), never a user's bad input
(:func:`retry_on_transient_errors`). A task that must not repeat its side effect (a server launch, an
answer added to a conversation) takes no retry preset.

The presets are typed dicts, so ``@task(name=..., **RETRY_TRANSIENT_IO, **NOT_PERSISTED)`` is checked by
mypy against Prefect's decorator signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from prefect import State, Task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun

from ods.adapters.milvus.client import VectorIndexUnavailable
from ods.errors import CatalogError, ObjectStoreError


class FlowResultOptions(TypedDict):
    """How a flow keeps its result (``@flow`` keywords)."""

    result_serializer: str
    persist_result: bool


class TaskResultOptions(TypedDict, total=False):
    """How a task keeps and caches its result (``@task`` keywords)."""

    cache_policy: CachePolicy
    persist_result: bool
    result_serializer: str


class RetryOptions(TypedDict):
    """When and how often a failed task runs again (``@task`` keywords)."""

    retries: int
    retry_delay_seconds: list[float]
    retry_condition_fn: Callable[[Task[..., Any], TaskRun, State[Any]], bool]


# --- results -----------------------------------------------------------------------------------------

# Flows hand their results to their caller in memory and nothing reads them back, so they are not
# persisted (Prefect's default); the exception of a failed run is always written, now as JSON.
FLOW_RESULTS: FlowResultOptions = {"result_serializer": "json", "persist_result": False}

# Tasks whose values live only within a run (frames, plans, batches): no cache, nothing persisted.
NOT_PERSISTED: TaskResultOptions = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "result_serializer": "json",
}

# Tasks with a cache policy: their results are persisted for the cache, as JSON.
JSON_RESULTS: TaskResultOptions = {"result_serializer": "json"}


# --- retries -----------------------------------------------------------------------------------------

# VectorIndexUnavailable: Milvus was away through the adapter's own retries (a restart, say); a later
# attempt of the task reopens the index, and re-running its idempotent writes is safe. A plain
# VectorIndexError (schema, dimension, a refused request) is not retried.
TRANSIENT = (ObjectStoreError, CatalogError, VectorIndexUnavailable, ConnectionError, TimeoutError)


def retry_on_transient_errors(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry unreachable stores and timeouts, not bad specs or data."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - any other failure is the input's fault: retrying cannot help
        return False
    return False


# Reads and idempotent writes of the catalog, the object store and the index: two more tries, after
# 1 s and 5 s.
RETRY_TRANSIENT_IO: RetryOptions = {
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": retry_on_transient_errors,
}

# Training: one more try after 5 s, which resumes from the checkpoints the first one stored.
RETRY_ONCE_TO_RESUME: RetryOptions = {
    "retries": 1,
    "retry_delay_seconds": [5],
    "retry_condition_fn": retry_on_transient_errors,
}


# --- artifact keys -----------------------------------------------------------------------------------
# Prefect artifact keys take lower-case letters, digits and dashes; a key names the artifact's latest
# version, so one key per subject (a dataset, a model, a knowledge base) keeps its history together.

ANSWER_ARTIFACT = "answer"
HEALTH_ARTIFACT = "ods-health"
KB_SYNC_ARTIFACT = "kb-sync"


def _artifact_key(*parts: str) -> str:
    return "-".join(part.replace("_", "-").lower() for part in parts)


def dataset_card_key(dataset: str) -> str:
    """The dataset card of ``dataset`` (markdown)."""
    return _artifact_key("dataset", dataset)


def validation_table_key(dataset: str) -> str:
    """The expectation results of ``dataset``'s last prepare run (table)."""
    return _artifact_key("dataset", dataset, "validation")


def model_card_key(model: str) -> str:
    """The model card of ``model``'s newest registered version (markdown)."""
    return _artifact_key("model", model)


def ingest_progress_key(kb: str) -> str:
    """The progress of an ingest of ``kb`` (progress)."""
    return _artifact_key("kb", kb, "progress")


def ingest_report_key(kb: str) -> str:
    """The counts and quarantined documents of an ingest of ``kb`` (markdown)."""
    return _artifact_key("kb", kb, "ingest")
