"""`ods events`: the MinIO webhook bridge that turns bucket notifications into Prefect events."""

from __future__ import annotations

import typer

events_app = typer.Typer(help="Event sources: the MinIO bucket-notification bridge.", no_args_is_help=True)


@events_app.callback()
def events() -> None:
    """Event sources that start flows: the MinIO webhook bridge (the watch-bucket flow polls as well)."""


@events_app.command("bridge")
def bridge(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: every interface)."),
    port: int = typer.Option(8787, "--port", min=1, max=65535, help="TCP port to listen on."),
) -> None:
    """Accept MinIO webhooks at POST /minio/events and emit ods.object.created|deleted Prefect events.

    Set ODS_WATCH__BRIDGE_TOKEN to require `Authorization: Bearer <token>` (MinIO's webhook auth_token).
    """
    from ods.api.events_bridge import BridgeConfig, serve_bridge
    from ods.settings import get_settings
    from ods.stages.watch import emit_with_prefect, watch_layout

    settings = get_settings()
    token = settings.watch.bridge_token
    config = BridgeConfig(watch_layout(settings), token.get_secret_value() if token is not None else None)
    typer.echo(f"bridge listening on http://{host}:{port}/minio/events (auth: {'on' if token else 'off'})")
    serve_bridge(config, emit_with_prefect, host, port)
