"""How flows and tasks keep their results: as JSON, never pickle, and persisted only where something reads them.

Prefect's default result serializer is pickle (``PREFECT_RESULTS_DEFAULT_SERIALIZER``): a failed flow run
writes its exception under ``PREFECT_HOME/storage`` (or the configured result storage) with it, whatever
path started the run. Naming the JSON serializer on every decorator means no path (an `ods` command,
`python -m deployments.serve`, a worker) depends on that setting. A serializer named on a decorator also
makes Prefect persist results unless told not to, hence three sets of decorator arguments:
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

# Flows hand their results to their caller in memory and nothing reads them back, so they are not
# persisted (Prefect's default); the exception of a failed run is always written, now as JSON.
FLOW_RESULTS: dict[str, Any] = {"result_serializer": "json", "persist_result": False}

# Tasks whose values live only within a run (frames, plans, batches): no cache, nothing persisted.
NOT_PERSISTED: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "result_serializer": "json",
}

# Tasks with a cache policy: their results are persisted for the cache, as JSON.
JSON_RESULTS: dict[str, Any] = {"result_serializer": "json"}
