"""The events ods emits: their names, resource ids and the labels triggers match on.

Events are a public interface (``prefect.yaml`` triggers match them; docs/events.md lists them), so this
is the one place they are spelled. Payloads are built where their facts are (the stages and tasks); the
deterministic event ids stay with what they identify (``bucket_diff.object_event_id``,
``deploy_gate.approval_event_id``, ``PreparedVersion.event_id``).
"""

from __future__ import annotations

from typing import Literal

OBJECT_CREATED = "ods.object.created"
OBJECT_DELETED = "ods.object.deleted"
DATASET_REGISTERED = "ods.dataset.registered"
DATASET_REJECTED = "ods.dataset.rejected"
MODEL_REGISTERED = "ods.model.registered"
MODEL_APPROVED = "ods.model.approved"
MODEL_DEPLOYED = "ods.model.deployed"
MODEL_FAILED = "ods.model.failed"
KB_UPDATED = "ods.kb.updated"
EVENT_NAMES = (
    OBJECT_CREATED,
    OBJECT_DELETED,
    DATASET_REGISTERED,
    DATASET_REJECTED,
    MODEL_REGISTERED,
    MODEL_APPROVED,
    MODEL_DEPLOYED,
    MODEL_FAILED,
    KB_UPDATED,
)

# Resource labels: triggers match labels, not payloads.
OBJECT_KIND_LABEL = "ods.object.kind"
OBJECT_BUCKET_LABEL = "ods.object.bucket"
KB_LABEL = "ods.kb"
DATASET_TRAIN_LABEL = "ods.dataset.train"
"""``"true"`` when the dataset's spec has a ``train:`` block, so a trigger starts train-model for it only."""
MODEL_BACKEND_LABEL = "ods.model.backend"
"""The server an approved version is to be deployed on; each deploy deployment's trigger matches one."""
LABELS = (OBJECT_KIND_LABEL, OBJECT_BUCKET_LABEL, KB_LABEL, DATASET_TRAIN_LABEL, MODEL_BACKEND_LABEL)

_OBJECT_EVENTS = {"created": OBJECT_CREATED, "deleted": OBJECT_DELETED}


def object_event_name(action: Literal["created", "deleted"]) -> str:
    """``ods.object.created`` or ``ods.object.deleted``."""
    return _OBJECT_EVENTS[action]


def dataset_event_name(registered: bool) -> str:
    """``ods.dataset.registered``, or ``ods.dataset.rejected`` for a version that was not."""
    return DATASET_REGISTERED if registered else DATASET_REJECTED


def object_resource(bucket: str, key: str, *, kind: str, kb: str | None = None) -> dict[str, str]:
    """The resource of an object event: ``ods.object.<bucket>/<key>``, labelled with its kind, bucket and
    (for a document) its knowledge base."""
    resource = {
        "prefect.resource.id": f"ods.object.{bucket}/{key}",
        "prefect.resource.name": key,
        OBJECT_KIND_LABEL: kind,
        OBJECT_BUCKET_LABEL: bucket,
    }
    if kb is not None:
        resource[KB_LABEL] = kb
    return resource


def dataset_resource(name: str, *, train: bool) -> dict[str, str]:
    """The resource of a dataset event: ``ods.dataset.<name>``, labelled with whether to train on it."""
    return {
        "prefect.resource.id": f"ods.dataset.{name}",
        "prefect.resource.name": name,
        DATASET_TRAIN_LABEL: "true" if train else "false",
    }


def dataset_related(name: str, ref: str) -> dict[str, str]:
    """A dataset as a related resource (the dataset version ``ref`` a model was trained on)."""
    return {
        "prefect.resource.id": f"ods.dataset.{name}",
        "prefect.resource.role": "dataset",
        "prefect.resource.name": ref,
    }


def model_resource(name: str, *, backend: str | None = None) -> dict[str, str]:
    """The resource of a model event: ``ods.model.<name>`` (labelled with a backend when approved)."""
    resource = {"prefect.resource.id": f"ods.model.{name}", "prefect.resource.name": name}
    if backend is not None:
        resource[MODEL_BACKEND_LABEL] = backend
    return resource


def model_version_related(version_id: int, ref: str) -> dict[str, str]:
    """A model version (catalog id, ``NAME@VERSION``) as a related resource."""
    return {
        "prefect.resource.id": f"ods.model-version.{version_id}",
        "prefect.resource.role": "model-version",
        "prefect.resource.name": ref,
    }


def kb_resource(kb: str) -> dict[str, str]:
    """The resource of a knowledge-base event: ``ods.kb.<name>``."""
    return {"prefect.resource.id": f"ods.kb.{kb}", "prefect.resource.name": kb}
