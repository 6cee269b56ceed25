"""``/api/v1/webhooks``: subscriptions to the platform's events, POSTed signed to a URL by the server's
dispatcher (``ods.api.webhooks``), with a delivery log per subscription."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from ods.adapters.catalog.records import WebhookRecord
from ods.api.deps import ServerResources
from ods.api.envelope import Envelope, bad_input_response, ok
from ods.api.tenancy import CallerTenant, owned_webhook
from ods.api.views import view_of
from ods.api.webhooks import check_target
from ods.domain.webhooks import WebhookEvent, WebhookUrlRefused, secret_hint

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

WebhookId = Annotated[int, Path(ge=1, description="The webhook's id (from POST /api/v1/webhooks).")]


class WebhookRequest(BaseModel):
    """A new subscription: where to send which events, and the key that signs them."""

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="Where events are POSTed: http or https. On the cluster profile a host that resolves to "
        "a loopback, private or link-local address is refused unless ODS_API__WEBHOOKS__ALLOWED_TARGETS holds it.",
    )
    events: list[WebhookEvent] = Field(
        min_length=1, max_length=5, description="The events to receive (at least one)."
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="Key of the X-ODS-Signature HMAC (16-256 characters). Unset: one is made and returned "
        "once, in this answer.",
    )
    description: str | None = Field(default=None, max_length=2000, description="What the webhook is for.")


class Webhook(BaseModel):
    """A subscription, as every answer but the creating one shows it."""

    id: int = Field(description="The webhook's id.")
    url: str = Field(description="Where its events are POSTed.")
    events: list[str] = Field(description="The event types it receives.")
    description: str | None = Field(description="What it is for, as given.")
    secret_hint: str = Field(description="The secret's first characters and length; never the secret.")
    created_at: datetime = Field(description="When it was made; it receives the events that happen after.")


class CreatedWebhook(Webhook):
    """A new subscription with its secret (this answer only)."""

    secret: str = Field(description="The signing secret: shown here only, keep it with the receiver.")


class Delivery(BaseModel):
    """One event for one webhook and how its attempts went."""

    id: str = Field(description="The X-ODS-Delivery header: the same on every attempt of this delivery.")
    event_type: str = Field(description="dataset.created, dataset.updated, model.deployed, …")
    status: str = Field(description="pending, delivered or expired (retries ran out).")
    attempts: int = Field(description="Attempts made so far.")
    last_status_code: int | None = Field(description="HTTP status of the last attempt (None: no answer).")
    last_error: str | None = Field(description="Why the last attempt failed.")
    next_attempt_at: datetime | None = Field(description="When it is tried again, while pending.")
    created_at: datetime = Field(description="When the event became this delivery.")
    updated_at: datetime = Field(description="When its last attempt was recorded.")


class WebhookDetail(Webhook):
    """A subscription and its delivery log."""

    deliveries: list[Delivery] = Field(description="The newest deliveries first.")


def _webhook(record: WebhookRecord) -> Webhook:
    return view_of(Webhook, record, secret_hint=secret_hint(record.secret))


@router.post(
    "", summary="Subscribe a URL to events", status_code=201, response_model=Envelope[CreatedWebhook]
)
def create_webhook(
    body: WebhookRequest, request: Request, resources: ServerResources, tenant: CallerTenant
) -> Envelope[CreatedWebhook] | JSONResponse:
    """Record the subscription; the answer holds its secret, which no later answer shows."""
    settings = resources.settings
    try:
        check_target(body.url, settings.api.webhooks, settings.profile)
    except WebhookUrlRefused as refused:
        message = str(refused)
        return bad_input_response(request.url.path, "body.url", message)
    secret = body.secret or secrets.token_urlsafe(32)
    record = resources.catalog.add_webhook(
        body.url, events=list(body.events), secret=secret, description=body.description, tenant=tenant
    )
    return ok(CreatedWebhook(**_webhook(record).model_dump(), secret=secret))


@router.get("", summary="List webhooks", response_model=Envelope[list[Webhook]])
def list_webhooks(resources: ServerResources, tenant: CallerTenant) -> Envelope[list[Webhook]]:
    """Every subscription of the caller's tenant, oldest first (secrets shown as hints)."""
    return ok([_webhook(record) for record in resources.catalog.list_webhooks(tenant=tenant)])


@router.get("/{webhook_id}", summary="A webhook and its delivery log", response_model=Envelope[WebhookDetail])
def get_webhook(
    webhook_id: WebhookId,
    resources: ServerResources,
    tenant: CallerTenant,
    limit: Annotated[int, Query(ge=1, le=500, description="How many of the newest deliveries.")] = 50,
) -> Envelope[WebhookDetail]:
    """The subscription and its newest deliveries (attempts, last status code or error, next attempt)."""
    catalog = resources.catalog
    record = owned_webhook(catalog, webhook_id, tenant)
    found = catalog.webhook_deliveries(webhook_id, limit=limit)
    deliveries = [Delivery.model_validate(item, from_attributes=True) for item in found]
    return ok(WebhookDetail(**_webhook(record).model_dump(), deliveries=deliveries))


@router.delete("/{webhook_id}", summary="Delete a webhook", response_model=Envelope[Webhook])
def delete_webhook(
    webhook_id: WebhookId, resources: ServerResources, tenant: CallerTenant
) -> Envelope[Webhook]:
    """Delete the subscription and its deliveries: nothing more is sent to it."""
    owned_webhook(resources.catalog, webhook_id, tenant)
    return ok(_webhook(resources.catalog.delete_webhook(webhook_id)))
