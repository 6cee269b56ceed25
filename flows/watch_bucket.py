"""`watch_bucket`: poll the watched prefixes and emit ods.object.created|deleted for what changed.

Scheduled every minute. Events go out before what was seen is recorded, with deterministic ids, so a run
killed in between re-emits the same events next time and two concurrent runs emit the same events; the
flows those events start are idempotent. The MinIO webhook bridge (`ods events bridge`) emits the same
events sooner; this watcher reconciles whatever a webhook missed. A run that a redeploy left beside the
current schedule's run for its minute does nothing (tasks/schedules.py).
"""

from __future__ import annotations

from prefect import flow

from ods.domain.scheduled_runs import LeftoverSkip
from ods.stages.watch import WatchResult
from tasks.presets import FLOW_RESULTS
from tasks.schedules import skip_redeploy_leftover
from tasks.watch import emit_watched_events, plan_watched_changes, record_watched_changes


@flow(name="watch-bucket", **FLOW_RESULTS)
def watch_bucket() -> WatchResult | LeftoverSkip:
    """Emit one event per object created or deleted under the watched prefixes since the last run.

    Returns the events emitted and the objects recorded (as JSON ``{"events": [...], "recorded": N}``),
    or the skip result of a redeploy's leftover run (:class:`ods.domain.scheduled_runs.LeftoverSkip`).
    """
    if (skipped := skip_redeploy_leftover()) is not None:
        return skipped
    changes = plan_watched_changes()
    events = emit_watched_events(changes)
    recorded = record_watched_changes(changes)
    return WatchResult(events=events, recorded=recorded)


if __name__ == "__main__":
    watch_bucket()
