"""Webhooks of `ods serve` (migration 0008): subscriptions, the event outbox the stages write, and the
deliveries the server's dispatcher makes of it.

The outbox is what lets a flow process (a prepare or deploy run) and the server share events with no
broker: the stage writes a row, the dispatcher of whichever server runs fans it out into one delivery per
subscription and claims due deliveries for one attempt at a time (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the write lock on SQLite), so two servers on one catalog never send the same attempt twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, add_row, require_row, to_record
from ods.adapters.catalog.records import (
    DueDelivery,
    OutboxEventRecord,
    WebhookDeliveryRecord,
    WebhookRecord,
)
from ods.adapters.catalog.schema import (
    OutboxEvent,
    Webhook,
    WebhookDelivery,
)

_ERROR_CHARS = 500
"""How much of a failed attempt's error a delivery keeps."""


class WebhookTables(CatalogBase):
    """``webhooks``, ``event_outbox`` and ``webhook_deliveries``."""

    def add_webhook(
        self,
        url: str,
        *,
        events: Sequence[str],
        secret: str,
        description: str | None = None,
        tenant: str | None = None,
    ) -> WebhookRecord:
        """Record a subscription of ``url`` to ``events`` (checked by the caller), signed with ``secret``,
        belonging to ``tenant`` (else the catalog's tenant)."""
        if not events:
            raise ValueError("a webhook subscribes to at least one event")

        def work(session: Session) -> WebhookRecord:
            row = Webhook(
                url=url,
                events=sorted(set(events)),
                secret=secret,
                description=description,
                tenant=tenant or self.tenant,
            )
            return _webhook_record(add_row(session, row))

        return self._write(work)

    def list_webhooks(self, *, tenant: str | None = None) -> list[WebhookRecord]:
        """Every subscription (of ``tenant`` when given), oldest first."""
        query = select(Webhook).order_by(Webhook.id)
        if tenant is not None:
            query = query.where(Webhook.tenant == tenant)
        return self._read(lambda session: [_webhook_record(row) for row in session.scalars(query)])

    def get_webhook(self, webhook_id: int) -> WebhookRecord:
        """The subscription ``webhook_id``; NotFoundError when there is none."""
        return self._read(
            lambda session: _webhook_record(require_row(session, Webhook, webhook_id, "webhook"))
        )

    def delete_webhook(self, webhook_id: int) -> WebhookRecord:
        """Delete the subscription and its deliveries (none is attempted again); NotFoundError if unknown."""

        def work(session: Session) -> WebhookRecord:
            row = require_row(session, Webhook, webhook_id, "webhook")
            record = _webhook_record(row)
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
            session.delete(row)
            return record

        return self._write(work)

    def webhook_deliveries(self, webhook_id: int, *, limit: int = 50) -> list[WebhookDeliveryRecord]:
        """The subscription's newest ``limit`` deliveries, newest first; NotFoundError if it is unknown."""

        def work(session: Session) -> list[WebhookDeliveryRecord]:
            require_row(session, Webhook, webhook_id, "webhook")
            rows = session.execute(
                select(WebhookDelivery, OutboxEvent.event_type)
                .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.webhook_id == webhook_id)
                .order_by(WebhookDelivery.event_id.desc())
                .limit(limit)
            ).all()
            return [_delivery_record(row, event_type) for row, event_type in rows]

        return self._read(work)

    def add_outbox_event(
        self, event_type: str, data: dict[str, Any], *, event_key: str | None = None
    ) -> OutboxEventRecord | None:
        """Write an event for the webhooks, when a subscription asks for its type (else nothing is kept:
        a subscription hears of events after it was made). Writing the same ``event_key`` again returns
        the event first written (a retried stage sends nothing twice). The event is the tenant's that
        ``data`` names (its ``tenant`` field), else the catalog's tenant's: only its webhooks hear of it."""
        key = event_key or uuid.uuid4().hex
        named = data.get("tenant")
        tenant = named if isinstance(named, str) else self.tenant
        if not self._read(lambda session: _subscribed(session, event_type)):
            return None  # no write (and no write lock) while nobody listens

        def work(session: Session) -> OutboxEventRecord | None:
            existing = session.scalar(select(OutboxEvent).where(OutboxEvent.event_key == key))
            if existing is not None:
                return _event_record(existing)
            if not _subscribed(session, event_type):
                return None
            row = OutboxEvent(event_key=key, event_type=event_type, data=data, tenant=tenant)
            return _event_record(add_row(session, row))

        return self._write(work)

    def fan_out_events(self, now: datetime, *, limit: int = 100) -> int:
        """Turn up to ``limit`` events not yet fanned out into one pending delivery per subscription that
        asks for their type, existed when they happened and belongs to the event's tenant (recorded when
        it was written), due at ``now``; returns how many were made."""

        waiting = select(OutboxEvent.id).where(OutboxEvent.fanned_out_at.is_(None)).limit(1)
        if self._read(lambda session: session.scalar(waiting)) is None:
            return 0  # the common case costs one read, not a write lock

        def work(session: Session) -> int:
            events = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.fanned_out_at.is_(None))
                .order_by(OutboxEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not events:
                return 0
            webhooks = session.execute(
                select(Webhook.id, Webhook.events, Webhook.created_at, Webhook.tenant)
            ).all()
            made = 0
            for event in events:
                for webhook_id, subscribed, created_at, owner in webhooks:
                    if (
                        event.event_type in subscribed
                        and created_at <= event.created_at
                        and owner == event.tenant
                    ):
                        session.add(
                            WebhookDelivery(
                                id=uuid.uuid4().hex,
                                webhook_id=webhook_id,
                                event_id=event.id,
                                status="pending",
                                next_attempt_at=now,
                            )
                        )
                        made += 1
                event.fanned_out_at = now
            session.flush()
            return made

        return self._write(work)

    def claim_due_deliveries(
        self, now: datetime, *, lease_until: datetime, limit: int = 20
    ) -> list[DueDelivery]:
        """Up to ``limit`` pending deliveries due at ``now``, each held until ``lease_until`` (another
        dispatcher skips it meanwhile; one whose attempt never reported is tried again after it)."""

        due = select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now
        )
        if self._read(lambda session: session.scalar(due.limit(1))) is None:
            return []

        def work(session: Session) -> list[DueDelivery]:
            rows = session.execute(
                select(WebhookDelivery, OutboxEvent, Webhook)
                .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            ).all()
            claimed = []
            for delivery, event, webhook in rows:
                delivery.next_attempt_at = lease_until
                claimed.append(
                    DueDelivery(
                        delivery=_delivery_record(delivery, event.event_type),
                        url=webhook.url,
                        event_created_at=event.created_at,
                        event_data=dict(event.data),
                        secret=webhook.secret,
                    )
                )
            session.flush()
            return claimed

        return self._write(work)

    def record_delivery_attempt(
        self,
        delivery_id: str,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> WebhookDeliveryRecord | None:
        """Count one attempt: ``delivered``, else pending until ``next_attempt_at`` (None: expired).
        None when the delivery is gone (its subscription was deleted during the attempt)."""

        def work(session: Session) -> WebhookDeliveryRecord | None:
            row = session.get(WebhookDelivery, delivery_id)
            if row is None:
                return None
            row.attempts += 1
            row.last_status_code = status_code
            row.last_error = None if error is None else error[:_ERROR_CHARS]
            if delivered:
                row.status, row.next_attempt_at = "delivered", None
            elif next_attempt_at is None:
                row.status, row.next_attempt_at = "expired", None
            else:
                row.next_attempt_at = next_attempt_at
            session.flush()
            event_type = session.scalar(select(OutboxEvent.event_type).where(OutboxEvent.id == row.event_id))
            return _delivery_record(row, event_type or "")

        return self._write(work)

    def prune_outbox(self, before: datetime) -> int:
        """Delete the events written before ``before`` that have no pending delivery left (their delivery
        log goes with them); returns how many."""

        def work(session: Session) -> int:
            pending = exists().where(
                WebhookDelivery.event_id == OutboxEvent.id, WebhookDelivery.status == "pending"
            )
            ids = list(
                session.scalars(
                    select(OutboxEvent.id).where(
                        OutboxEvent.created_at < before, OutboxEvent.fanned_out_at.is_not(None), ~pending
                    )
                )
            )
            if ids:
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
                session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
            return len(ids)

        return self._write(work)


def _subscribed(session: Session, event_type: str) -> bool:
    return any(event_type in events for events in session.scalars(select(Webhook.events)))


def _webhook_record(row: Webhook) -> WebhookRecord:
    return to_record(WebhookRecord, row, events=tuple(row.events))


def _event_record(row: OutboxEvent) -> OutboxEventRecord:
    return to_record(OutboxEventRecord, row, data=dict(row.data))


def _delivery_record(row: WebhookDelivery, event_type: str) -> WebhookDeliveryRecord:
    return to_record(WebhookDeliveryRecord, row, event_type=event_type)
