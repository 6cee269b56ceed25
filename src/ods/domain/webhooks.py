"""Webhooks: the events a subscription may ask for, the signature receivers check, the retry schedule and
which delivery targets are private. Pure: no I/O, no clock (callers pass ``now``), no settings.

A delivery is ``POST <url>`` with the JSON body ``{"event_type", "timestamp", "data"}`` and the headers
``X-ODS-Signature: sha256=<hex HMAC-SHA256 of the body bytes with the subscription's secret>``,
``X-ODS-Delivery`` (the delivery's id: the same on every retry, so a receiver drops repeats),
``X-ODS-Event`` (the event type) and ``X-ODS-Timestamp`` (when this attempt was sent, Unix seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from ods.errors import OdsError

WebhookEvent = Literal[
    "dataset.created", "dataset.updated", "model.deployed", "model.failed", "query.completed"
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)
DATASET_CREATED, DATASET_UPDATED, MODEL_DEPLOYED, MODEL_FAILED, QUERY_COMPLETED = WEBHOOK_EVENTS

SIGNATURE_HEADER = "X-ODS-Signature"
DELIVERY_HEADER = "X-ODS-Delivery"
EVENT_HEADER = "X-ODS-Event"
TIMESTAMP_HEADER = "X-ODS-Timestamp"
_SIGNATURE_PREFIX = "sha256="


class WebhookUrlRefused(OdsError):
    """A webhook URL that is not http(s), names no host, or (cluster profile) points inside the network."""


def event_body(event_type: str, timestamp: datetime, data: Mapping[str, Any]) -> bytes:
    """The bytes every attempt of a delivery sends (and signs): the same bytes on every retry."""
    stamp = timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {"event_type": event_type, "timestamp": stamp, "data": dict(data)}
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-ODS-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed by ``secret``."""
    return _SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (compared in constant time)."""
    return header is not None and hmac.compare_digest(sign_body(secret, body), header.strip())


def secret_hint(secret: str) -> str:
    """What listings show of a secret: its first four characters and its length, never more."""
    return f"{secret[:4]}… ({len(secret)} characters)"


def retry_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base_s`` doubled per earlier failure,
    at most ``max_s`` (1 → base, 2 → 2×base, 3 → 4×base, …)."""
    if attempts < 1:
        raise ValueError(f"attempts counts failed attempts from 1; got {attempts}")
    return min(max_s, base_s * 2.0 ** min(attempts - 1, 60))


def next_attempt_at(
    *, attempts: int, first_created: datetime, now: datetime, base_s: float, max_s: float, expire_s: float
) -> datetime | None:
    """When to try a delivery again after its ``attempts``-th failure at ``now``; None once the next try
    would fall after ``first_created + expire_s`` (the delivery has expired: it is given up)."""
    when = now + timedelta(seconds=retry_delay_s(attempts, base_s=base_s, max_s=max_s))
    return None if when > first_created + timedelta(seconds=expire_s) else when


def check_webhook_url(url: str) -> str:
    """The host of ``url`` when it is an absolute http or https URL with a host and no credentials;
    else WebhookUrlRefused naming what to fix."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookUrlRefused(
            f"webhook url {url!r} is not a URL ({error}); give e.g. https://host/path"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused(
            f"webhook url {url!r} must use http or https, not {parts.scheme or 'no scheme'!r}"
        )
    if not parts.hostname:
        raise WebhookUrlRefused(f"webhook url {url!r} names no host; give e.g. https://host/path")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused(
            f"webhook url for host {parts.hostname!r} carries credentials; drop them from the URL and check "
            "the X-ODS-Signature header with the webhook's secret instead"
        )
    del port  # parsed only to refuse a bad one
    return parts.hostname


def private_addresses(addresses: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """The addresses among ``addresses`` a cluster's webhooks may not reach (loopback, private, link-local,
    shared, reserved, multicast, unspecified), less those inside an ``allowed`` network (CIDR or address)."""
    networks = [ipaddress.ip_network(entry, strict=False) for entry in allowed if _is_network(entry)]
    refused = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        inside = (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
            or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE)
        )
        if inside and not any(address.version == net.version and address in net for net in networks):
            refused.append(str(address))
    return refused


_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
