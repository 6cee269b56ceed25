"""The pipelines of prefect.yaml as data: each deployment with its flow, parameters, schedules and event
triggers, and the events its flow emits, so a page can draw how one run leads to the next (object created →
prepare-dataset → dataset registered → train-model → model registered → gate-model → model approved →
deploy-model; document created → ingest-documents; schedules → check-health, watch-bucket, …).

Pure: the text of prefect.yaml in, typed values out (no Prefect import). What each flow emits is not in
prefect.yaml; :data:`FLOW_EMITS` says it, from the flows' tasks (docs/events.md lists the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from ods.domain.events import (
    DATASET_REGISTERED,
    DATASET_REJECTED,
    KB_UPDATED,
    MODEL_APPROVED,
    MODEL_DEPLOYED,
    MODEL_FAILED,
    MODEL_REGISTERED,
    OBJECT_CREATED,
    OBJECT_DELETED,
)
from ods.errors import SettingsError

FLOW_EMITS: Final[dict[str, tuple[str, ...]]] = {
    "watch-bucket": (OBJECT_CREATED, OBJECT_DELETED),
    "prepare-dataset": (DATASET_REGISTERED, DATASET_REJECTED),
    "train-model": (MODEL_REGISTERED,),
    "gate-model": (MODEL_APPROVED,),
    "deploy-model": (MODEL_DEPLOYED, MODEL_FAILED),
    "ingest-documents": (KB_UPDATED,),
    "sync-knowledge-bases": (KB_UPDATED,),
}
"""The events each flow (by its Prefect flow name) emits."""


class PipelinesFileError(SettingsError):
    """prefect.yaml cannot be read as deployments."""


@dataclass(frozen=True)
class Trigger:
    """An event trigger: a run starts when an event named in ``expect`` matches the labels of ``match``."""

    expect: tuple[str, ...]
    match: dict[str, Any]
    parameters: dict[str, Any]
    enabled: bool = True

    @property
    def label(self) -> str:
        """``ods.object.created`` (or ``ods.object.created | deleted``)."""
        first, *rest = self.expect or ("any event",)
        return " | ".join([first, *(name.rsplit(".", 1)[-1] for name in rest)])

    @property
    def condition(self) -> str:
        """The labels it matches, other than the resource id: ``ods.object.kind: spec, raw``."""
        parts = []
        for name, value in self.match.items():
            if name == "prefect.resource.id":
                continue
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{name.rsplit('.', 1)[-1]}: {shown}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Schedule:
    """A cron or interval schedule of a deployment."""

    cron: str | None
    interval_s: float | None
    timezone: str | None
    active: bool

    @property
    def label(self) -> str:
        if self.cron:
            return f"cron {self.cron}" + (f" {self.timezone}" if self.timezone else "")
        seconds = self.interval_s or 0
        return f"every {seconds / 60:g} min" if seconds >= 60 else f"every {seconds:g} s"


@dataclass(frozen=True)
class Deployment:
    """One deployment of prefect.yaml."""

    name: str
    flow: str
    entrypoint: str
    description: str
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    work_pool: str | None
    schedules: tuple[Schedule, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    emits: tuple[str, ...] = field(default=())

    @property
    def full_name(self) -> str:
        """``flow/deployment``, as Prefect names it (``deploy-model/deploy-model-cpu``)."""
        return f"{self.flow}/{self.name}"


def parse_pipelines(text: str, source_name: str = "prefect.yaml") -> list[Deployment]:
    """The deployments of a prefect.yaml, in file order; PipelinesFileError naming what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PipelinesFileError(f"{source_name}: invalid YAML: {' '.join(str(error).split())}") from None
    items = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise PipelinesFileError(f"{source_name} has no deployments list")
    deployments = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name") or not item.get("entrypoint"):
            raise PipelinesFileError(f"{source_name}: deployments[{index}] needs a name and an entrypoint")
        flow = _flow_name(str(item["entrypoint"]))
        pool = item.get("work_pool")
        deployments.append(
            Deployment(
                name=str(item["name"]),
                flow=flow,
                entrypoint=str(item["entrypoint"]),
                description=str(item.get("description") or ""),
                tags=tuple(str(tag) for tag in item.get("tags") or ()),
                parameters=dict(item.get("parameters") or {}),
                work_pool=str(pool["name"]) if isinstance(pool, dict) and pool.get("name") else None,
                schedules=tuple(_schedule(entry) for entry in item.get("schedules") or ()),
                triggers=tuple(
                    _trigger(entry) for entry in item.get("triggers") or () if entry.get("type") == "event"
                ),
                emits=FLOW_EMITS.get(flow, ()),
            )
        )
    return deployments


def _flow_name(entrypoint: str) -> str:
    """``flows/deploy_model.py:deploy_model`` → ``deploy-model`` (the flows are named after their function)."""
    return entrypoint.rsplit(":", 1)[-1].replace("_", "-")


def _schedule(entry: dict[str, Any]) -> Schedule:
    interval = entry.get("interval")
    return Schedule(
        cron=str(entry["cron"]) if entry.get("cron") else None,
        interval_s=float(interval) if interval is not None else None,
        timezone=str(entry["timezone"]) if entry.get("timezone") else None,
        active=bool(entry.get("active", True)),
    )


def _trigger(entry: dict[str, Any]) -> Trigger:
    expect = entry.get("expect") or ()
    return Trigger(
        expect=tuple(str(name) for name in ([expect] if isinstance(expect, str) else expect)),
        match=dict(entry.get("match") or {}),
        parameters=dict(entry.get("parameters") or {}),
        enabled=bool(entry.get("enabled", True)),
    )
