"""`ods serve`: the platform's HTTP API (datasets, knowledge bases, SQL, models, an OpenAI-compatible
gateway) in one long-lived process that keeps the models loaded."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to bind (default ODS_API__HOST, 127.0.0.1); one other machines can reach (e.g. "
            "0.0.0.0) only once an API key exists (`ods keys create`).",
        ),
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

    Other machines may reach it only with an API key: a non-loopback --host is refused until one exists.
    """
    from ods.api.server import check_bind_address, serve_api
    from ods.settings import get_settings

    settings = get_settings()
    bind_host = check_bind_address(settings, host or settings.api.host)
    bind_port = port or settings.api.port
    typer.echo(f"ods API on http://{bind_host}:{bind_port} (docs: /docs, OpenAI base URL: /v1)")
    serve_api(settings, host=bind_host, port=bind_port, preload=preload)
