"""The Prefect events of the runs `ods serve` does itself: the same names, resources, payloads and ids the
flows' tasks emit, so prefect.yaml's triggers (ods.dataset.registered → train-model, …) start on a
dataset registered or a model deployed through the API exactly as on one done by a flow run.

What the flows' tasks emit, and the server-side run that emits the same:

- prepare-dataset (``tasks/datasets.py``): ``ods.dataset.registered|rejected`` on ``ods.dataset.<name>``
  (labelled ``ods.dataset.train``), the version's summary plus its spec's ``train`` block, with the
  version's deterministic id (two runs ending on one version are one event to Prefect);
- ingest-documents (``tasks/ingest.py``): ``ods.kb.updated`` on ``ods.kb.<kb>`` when the sync indexed,
  deleted or quarantined a document;
- deploy-model (``tasks/serve.py``): ``ods.model.deployed`` or ``ods.model.failed`` on ``ods.model.<name>``,
  the version related; undeploy-model emits nothing, and neither does its server-side run.

Webhooks need nothing from here: the stages both paths call write the webhooks' outbox themselves.

The emitter is injected (:class:`PrefectEvents` in the server, a list in tests). With no Prefect API
configured (no ``PREFECT_API_URL``) :class:`PrefectEvents` sends nothing: Prefect would otherwise start a
temporary server inside `ods serve` to receive them, and nothing would listen to it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ods.adapters.catalog import DatasetCatalog
from ods.domain.events import (
    KB_UPDATED,
    MODEL_DEPLOYED,
    MODEL_FAILED,
    dataset_event_name,
    dataset_resource,
    kb_resource,
    model_resource,
    model_version_related,
)
from ods.stages.ingest import IngestSummary
from ods.stages.prepare import DatasetVersionSummary, PreparedVersion
from ods.stages.serve import DeploymentPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunEvent:
    """A Prefect event ready to emit."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]
    related: tuple[dict[str, str], ...] = ()
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    """Deterministic where the flow's is (a dataset version's event), else a new one, as the flow's."""


RunEventEmitter = Callable[[RunEvent], None]
"""Sends one event: :class:`PrefectEvents` in the server, ``list.append`` in tests."""


def dataset_event(
    catalog: DatasetCatalog, summary: DatasetVersionSummary, train: Mapping[str, Any] | None
) -> RunEvent:
    """``ods.dataset.registered|rejected`` of a prepared version, as prepare-dataset's register or reject
    task emits it (``train``: the spec's ``train:`` block, which the train-model trigger reads)."""
    registered = summary.status == "registered"
    name = dataset_event_name(registered)
    record = catalog.get_dataset_version(summary.dataset, summary.version)
    return RunEvent(
        event=name,
        resource=dataset_resource(summary.dataset, train=bool(train)),
        payload={**summary.model_dump(mode="json"), "train": None if train is None else dict(train)},
        id=PreparedVersion(record).event_id(name),
    )


def kb_updated_event(summary: IngestSummary) -> RunEvent | None:
    """``ods.kb.updated`` of a sync that changed the knowledge base (None for one that changed nothing)."""
    if not summary.changed_anything:
        return None
    return RunEvent(event=KB_UPDATED, resource=kb_resource(summary.kb), payload=summary.event_payload())


def model_event(name: str, plan: DeploymentPlan, payload: Mapping[str, Any]) -> RunEvent:
    """``ods.model.deployed`` or ``ods.model.failed`` of the deployment ``plan``."""
    return RunEvent(
        event=name,
        resource=model_resource(plan.model_name),
        related=(model_version_related(plan.version_id, plan.ref),),
        payload=dict(payload),
    )


def model_deployed_event(plan: DeploymentPlan, payload: Mapping[str, Any]) -> RunEvent:
    """``ods.model.deployed`` with the activated endpoint's summary."""
    return model_event(MODEL_DEPLOYED, plan, payload)


def model_failed_event(plan: DeploymentPlan, payload: Mapping[str, Any]) -> RunEvent:
    """``ods.model.failed`` with the failed endpoint's summary, problem and log tail."""
    return model_event(MODEL_FAILED, plan, payload)


class PrefectEvents:
    """Emits run events through Prefect's ``emit_event`` when a Prefect API is configured, else drops them.

    Whether one is configured is read from Prefect's settings on the first event (importing Prefect is
    not free, and a server that never emits never pays it). Prefect sends events from a worker thread;
    :meth:`close` waits for the ones still queued."""

    def __init__(self, api_url: Callable[[], str | None] | None = None) -> None:
        self._api_url = api_url or _prefect_api_url
        self._lock = threading.Lock()
        self._enabled: bool | None = None

    @property
    def enabled(self) -> bool:
        """Whether events go to a Prefect server (PREFECT_API_URL is set)."""
        with self._lock:
            if self._enabled is None:
                self._enabled = bool(self._api_url())
            return self._enabled

    def __call__(self, event: RunEvent) -> None:
        if not self.enabled:
            return
        from prefect.events import emit_event

        emit_event(
            event=event.event,
            resource=event.resource,
            related=list(event.related) or None,
            payload=event.payload,
            id=event.id,
        )

    def close(self) -> None:
        """Send what is still queued (nothing to do when no event was ever sent)."""
        if self._enabled:
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all()


def _prefect_api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def emit_quietly(emit: RunEventEmitter, event: RunEvent | None) -> None:
    """Emit ``event`` (if any); a Prefect server that cannot take it is logged, never fails the run whose
    work is done (the flows' tasks fail instead, and their retries emit again)."""
    if event is None:
        return
    try:
        emit(event)
    except Exception:  # the run's work is recorded; a lost event is logged with its id
        logger.exception("could not emit %s (id %s) to Prefect", event.event, event.id)
