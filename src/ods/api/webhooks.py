"""`ods serve`'s webhook dispatcher: the catalog's event outbox turned into signed, retried POSTs.

The stages write events to the outbox (``add_outbox_event``) in whatever process they run; a background
thread of the server looks every ODS_API__WEBHOOKS__POLL_S seconds, makes one delivery per subscription
that asks for an event's type, and sends each due delivery with ``X-ODS-Signature`` (HMAC-SHA256 of the
body with the subscription's secret) and ``X-ODS-Delivery`` (the same id on every retry). A receiver that
does not answer 2xx is tried again after ODS_API__WEBHOOKS__RETRY_BASE_S, doubling up to RETRY_MAX_S, until
EXPIRE_S after the event; so a receiver that is down for less loses nothing, and one that gets a retry of a
delivery it took drops it by its id.

Targets: http(s) only. On the cluster profile a URL whose host resolves to a loopback, private, link-local
or otherwise internal address is refused (at registration and again before every attempt, so a name that
changes its address later is caught) unless ODS_API__WEBHOOKS__ALLOWED_TARGETS holds it; the local profile
allows every target. Redirects are not followed.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ods.adapters.catalog.schema import utcnow
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    QUERY_COMPLETED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookUrlRefused,
    check_webhook_url,
    event_body,
    next_attempt_at,
    private_addresses,
    sign_body,
)
from ods.errors import OdsError
from ods.settings import Profile, WebhookSettings

if TYPE_CHECKING:
    import httpx

    from ods.adapters.catalog import WebhookCatalog
    from ods.adapters.catalog.records import DueDelivery

logger = logging.getLogger(__name__)

Resolver = Callable[[str], Sequence[str]]
SENDERS = 4
"""Deliveries sent at once: a receiver that hangs until the timeout holds up only its own delivery."""
_ROUNDS = 4
"""Deliveries claimed per round, in batches of SENDERS."""
_LEASE_MARGIN_S = 30.0
_PRUNE_EVERY_S = 3600.0


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (an address resolves to itself)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def check_target(
    url: str, settings: WebhookSettings, profile: Profile, resolve: Resolver = resolve_host
) -> None:
    """WebhookUrlRefused unless ``url`` is an http(s) URL the profile lets webhooks reach (see the module)."""
    host = check_webhook_url(url)
    if profile != "cluster":
        return
    try:
        addresses = resolve(host)
    except OSError as error:
        raise WebhookUrlRefused(
            f"webhook url host {host!r} does not resolve ({error}); give a host this server can resolve"
        ) from None
    refused = private_addresses(addresses, settings.allowed_targets)
    if refused:
        raise WebhookUrlRefused(
            f"webhook url host {host!r} resolves to internal address {', '.join(refused)}, which the cluster "
            "profile refuses (SSRF); add it to ODS_API__WEBHOOKS__ALLOWED_TARGETS if it is meant to be reached"
        )


def record_query_completed(
    catalog: WebhookCatalog,
    *,
    sql: str,
    datasets: list[str] | None,
    row_count: int,
    truncated: bool,
    seconds: float,
    tenant: str = DEFAULT_TENANT,
) -> None:
    """Write ``query.completed`` for a SQL query the API answered (nothing is kept when no webhook asks);
    only ``tenant``'s webhooks hear of it."""
    data: dict[str, Any] = {
        "tenant": tenant,
        "sql": sql,
        "datasets": datasets,
        "row_count": row_count,
        "truncated": truncated,
        "seconds": round(seconds, 4),
    }
    catalog.add_outbox_event(QUERY_COMPLETED, data)


class WebhookDispatcher:
    """The thread that fans the outbox out and sends due deliveries, until :meth:`stop`.

    ``catalog`` is called for the catalog on every round (the server's resources open it lazily);
    ``client`` (an ``httpx.Client``, left open by :meth:`stop`), ``clock`` and ``resolve`` are injectable
    for tests.
    """

    def __init__(
        self,
        catalog: Callable[[], WebhookCatalog],
        settings: WebhookSettings,
        *,
        profile: Profile = "local",
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utcnow,
        resolve: Resolver = resolve_host,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._profile = profile
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._resolve = resolve
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: ThreadPoolExecutor | None = None
        self._last_prune: datetime | None = None

    def start(self) -> None:
        """Start the dispatcher thread (idempotent)."""
        if self._thread is not None:
            return
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self._settings.timeout_s, follow_redirects=False)
        self._senders = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="ods-webhook-send")
        self._thread = threading.Thread(target=self._loop, name="ods-webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread: an attempt under way finishes (bounded by the timeout), nothing new starts.
        Deliveries still due stay in the catalog for the next server."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._senders is not None:
            self._senders.shutdown(wait=True)
            self._senders = None
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def _loop(self) -> None:
        problem = None
        while not self._stop.is_set():
            try:
                self.run_once()
                if problem is not None:
                    logger.warning("webhook dispatcher: working again")
                problem = None
            except (OdsError, RuntimeError) as error:  # catalog down or closing: try again next round
                if str(error) != problem:  # once per new problem, not once per poll
                    logger.warning(
                        "webhook dispatcher: %s; trying again every %.1f s", error, self._settings.poll_s
                    )
                problem = str(error)
            except Exception:
                logger.exception(
                    "webhook dispatcher round failed; trying again in %.1f s", self._settings.poll_s
                )
            self._wake.wait(self._settings.poll_s)
            self._wake.clear()

    def run_once(self) -> int:
        """One round: fan new events out, send the deliveries due now; returns how many were attempted."""
        catalog = self._catalog()
        now = self._clock()
        catalog.fan_out_events(now)
        # Held long enough for the round's last attempt to end (batches of SENDERS, each within the timeout).
        lease = now + timedelta(seconds=_ROUNDS * self._settings.timeout_s + _LEASE_MARGIN_S)
        due = catalog.claim_due_deliveries(now, lease_until=lease, limit=SENDERS * _ROUNDS)
        if due:
            if self._senders is None:
                for item in due:
                    self._attempt(catalog, item)
            else:
                list(self._senders.map(lambda item: self._attempt(catalog, item), due))
        self._prune(catalog, now)
        return len(due)

    def _attempt(self, catalog: WebhookCatalog, due: DueDelivery) -> None:
        if self._stop.is_set():  # stopping: leave it to its lease, the next server sends it
            return
        delivery = due.delivery
        body = event_body(delivery.event_type, due.event_created_at, due.event_data)
        status_code: int | None = None
        error: str | None = None
        try:
            check_target(due.url, self._settings, self._profile, self._resolve)
            client = self._client
            if client is None:
                return
            response = client.post(
                due.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "ods-webhooks/1",
                    SIGNATURE_HEADER: sign_body(due.secret, body),
                    DELIVERY_HEADER: delivery.id,
                    EVENT_HEADER: delivery.event_type,
                    TIMESTAMP_HEADER: str(int(self._clock().timestamp())),
                },
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except WebhookUrlRefused as refused:
            error = str(refused)
        except Exception as failure:  # noqa: BLE001 - any transport failure is one failed attempt
            error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
        now = self._clock()
        delivered = error is None
        retry_at = None
        if not delivered:
            retry_at = next_attempt_at(
                attempts=delivery.attempts + 1,
                first_created=due.event_created_at,
                now=now,
                base_s=self._settings.retry_base_s,
                max_s=self._settings.retry_max_s,
                expire_s=self._settings.expire_s,
            )
        catalog.record_delivery_attempt(
            delivery.id, delivered=delivered, status_code=status_code, error=error, next_attempt_at=retry_at
        )
        if not delivered:
            logger.info(
                "webhook delivery %s (%s) attempt %d failed: %s; %s",
                delivery.id,
                delivery.event_type,
                delivery.attempts + 1,
                error,
                "expired" if retry_at is None else f"next attempt at {retry_at.isoformat()}",
            )

    def _prune(self, catalog: WebhookCatalog, now: datetime) -> None:
        if self._last_prune is not None and (now - self._last_prune).total_seconds() < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        catalog.prune_outbox(now - timedelta(seconds=self._settings.keep_log_s))
