"""`watch_bucket`: poll the watched prefixes and emit ods.object.created|deleted for what changed.

Scheduled every minute. Events go out before what was seen is recorded, with deterministic ids, so a run
killed in between re-emits the same events next time and two concurrent runs emit the same events; the
flows those events start are idempotent. The MinIO webhook bridge (`ods events bridge`) emits the same
events sooner; this watcher reconciles whatever a webhook missed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.results import FLOW_RESULTS
from tasks.watch import emit_watched_events, plan_watched_changes, record_watched_changes


@flow(name="watch-bucket", **FLOW_RESULTS)
def watch_bucket() -> dict[str, Any]:
    """Emit one event per object created or deleted under the watched prefixes since the last run."""
    changes = plan_watched_changes()
    events = emit_watched_events(changes)
    recorded = record_watched_changes(changes)
    return {"events": events, "recorded": recorded}


if __name__ == "__main__":
    watch_bucket()
