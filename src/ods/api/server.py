"""Running the API with uvicorn: loopback unless an API key or an issuer lets callers in, the cluster
profile only with one of them, graceful shutdown."""

from __future__ import annotations

import logging

from ods.adapters.catalog.schema import utcnow
from ods.api.auth import is_loopback_address
from ods.errors import OdsError
from ods.settings import Settings

logger = logging.getLogger(__name__)

# Seconds in-flight requests (and open streams) get to finish after SIGINT/SIGTERM before they are cut.
GRACEFUL_SHUTDOWN_S = 30


class UnsafeBindError(OdsError):
    """A bind address other machines could reach, while no active API key or issuer exists to let them in."""


class UnauthenticatedClusterError(OdsError):
    """The cluster profile's server would start with no way to authenticate anyone."""


def check_cluster_access(*, issuer: str | None, active_keys: int) -> None:
    """UnauthenticatedClusterError unless an issuer is set or an active API key exists: a cluster's server
    never serves anonymous callers (the local profile's keyless loopback access does not apply there)."""
    if issuer is None and active_keys == 0:
        raise UnauthenticatedClusterError(
            "refusing to serve the API on the cluster profile without authentication: set ODS_AUTH__ISSUER "
            "and ODS_AUTH__AUDIENCE (an OpenID provider such as Keycloak), or create an API key first "
            "(`ods keys create NAME --role ROLE`)"
        )


def check_bind(host: str, *, active_keys: int, issuer: str | None = None) -> str:
    """``host`` when only this machine can reach it (127.0.0.0/8, ::1, localhost), when an active API key
    exists or when an issuer's tokens are required; else UnsafeBindError."""
    if is_loopback_address(host) or active_keys > 0 or issuer is not None:
        return host
    raise UnsafeBindError(
        f"refusing to serve the API on {host!r} without an API key: other machines could reach it; create "
        "a key first (`ods keys create NAME`, then send it as 'Authorization: Bearer <key>'), or bind "
        "127.0.0.1 (the default)"
    )


def check_bind_address(settings: Settings, host: str) -> str:
    """:func:`check_bind` against the catalog's active keys (opened only for a non-loopback ``host``)."""
    if is_loopback_address(host):
        return host
    from ods.factories import open_catalog

    with open_catalog(settings) as catalog:
        return check_bind(
            host, active_keys=catalog.count_active_api_keys(utcnow()), issuer=settings.auth.issuer
        )


def serve_api(settings: Settings, *, host: str, port: int, preload: bool = False) -> None:
    """Serve the API until SIGINT/SIGTERM; in-flight requests finish (up to ``GRACEFUL_SHUTDOWN_S``), the
    app's lifespan closes the resources, then uvicorn re-raises the signal (the process ends as that
    signal says, as a supervisor expects)."""
    import uvicorn

    from ods.api.app import create_app
    from ods.api.resources import Resources
    from ods.factories import with_shared_lite_server

    settings = with_shared_lite_server(settings)  # ingest runs use its Milvus Lite file meanwhile

    resources = Resources(settings)
    try:
        if settings.profile == "cluster":
            check_cluster_access(
                issuer=settings.auth.issuer, active_keys=resources.catalog.count_active_api_keys(utcnow())
            )
        if not is_loopback_address(host):
            check_bind(
                host,
                active_keys=resources.catalog.count_active_api_keys(utcnow()),
                issuer=settings.auth.issuer,
            )
        if preload:
            logger.info("loading the catalog, the embedder and the LLM before serving")
            resources.preload()
        config = uvicorn.Config(
            create_app(settings, resources),
            host=host,
            port=port,
            log_level="info",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            server_header=False,
        )
        uvicorn.Server(config).run()
    finally:
        resources.close()
