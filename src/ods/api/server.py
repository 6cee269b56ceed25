"""Running the API with uvicorn: loopback only (no authentication exists yet), graceful shutdown."""

from __future__ import annotations

import ipaddress
import logging

from ods.errors import OdsError
from ods.settings import Settings

logger = logging.getLogger(__name__)

# Seconds in-flight requests (and open streams) get to finish after SIGINT/SIGTERM before they are cut.
GRACEFUL_SHUTDOWN_S = 30


class UnsafeBindError(OdsError):
    """A bind address other machines could reach, while the API asks for no credentials."""


def check_loopback(host: str) -> str:
    """``host`` when only this machine can reach it (127.0.0.0/8, ::1, localhost); else UnsafeBindError."""
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UnsafeBindError(
            f"refusing to serve the API on {host!r}: other machines could reach it and the API has no "
            "authentication yet (API keys come later); bind 127.0.0.1 (the default) and put a proxy that "
            "authenticates in front if others must reach it"
        )
    return host


def serve_api(settings: Settings, *, host: str, port: int, preload: bool = False) -> None:
    """Serve the API until SIGINT/SIGTERM; in-flight requests finish (up to ``GRACEFUL_SHUTDOWN_S``), the
    app's lifespan closes the resources, then uvicorn re-raises the signal (the process ends as that
    signal says, as a supervisor expects)."""
    import uvicorn

    from ods.api.app import create_app
    from ods.api.resources import Resources

    check_loopback(host)
    resources = Resources(settings)
    try:
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
