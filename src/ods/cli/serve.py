"""`ods serve`: the platform's HTTP API (datasets, knowledge bases, SQL, models, an OpenAI-compatible
gateway) in one long-lived process that keeps the models loaded."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Loopback address to bind (default ODS_API__HOST, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="TCP port (default ODS_API__PORT, 8700)."),
    ] = None,
    preload: Annotated[
        bool, typer.Option("--preload", help="Open the catalog and load the models before serving.")
    ] = False,
) -> None:
    """Serve the HTTP API until Ctrl-C or SIGTERM (in-flight requests finish first); /docs describes it.

    Only loopback addresses are accepted: the API has no authentication yet.
    """
    from ods.api.server import check_loopback, serve_api
    from ods.settings import get_settings

    settings = get_settings()
    bind_host = check_loopback(host or settings.api.host)
    bind_port = port or settings.api.port
    typer.echo(f"ods API on http://{bind_host}:{bind_port} (docs: /docs, OpenAI base URL: /v1)")
    serve_api(settings, host=bind_host, port=bind_port, preload=preload)
