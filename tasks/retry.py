"""When a failed task is worth retrying: transient I/O only, never a user's bad input."""

from __future__ import annotations

from typing import Any

from ods.adapters.milvus.client import VectorIndexUnavailable
from ods.errors import CatalogError, ObjectStoreError

# VectorIndexUnavailable: Milvus was away through the adapter's own retries (a restart, say); a later
# attempt of the task reopens the index, and re-running its idempotent writes is safe. A plain
# VectorIndexError (schema, dimension, a refused request) is not retried.
TRANSIENT = (ObjectStoreError, CatalogError, VectorIndexUnavailable, ConnectionError, TimeoutError)


def retry_on_transient_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry unreachable stores and timeouts, not bad specs or data."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - any other failure is the input's fault: retrying cannot help
        return False
    return False
