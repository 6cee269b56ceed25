"""The HTTP API's app: routes over the same stage functions the CLI calls, one error mapping, one envelope.

``create_app(settings, resources)`` builds it and opens nothing: ``resources`` open what they hold on first
use (or at once with ``Resources.preload``), and the app's lifespan closes them when the server stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ods.api import downloads
from ods.api.audit import AuditTrail, AuditWriter
from ods.api.auth import ApiAccess, document_access
from ods.api.authorization import authorize_route
from ods.api.background import BackgroundRuns, recover_runs, sync_knowledge_base
from ods.api.console.routes import router as console_router
from ods.api.envelope import (
    NOT_FOUND,
    ErrorEnvelope,
    ErrorKind,
    bad_input_response,
    error_response,
    ods_error_response,
)
from ods.api.login import install_login
from ods.api.metrics import ApiMetrics
from ods.api.middleware import BodyTooLarge, RequestContext, body_too_large_response
from ods.api.proxy import EndpointProxy
from ods.api.quotas import TenantRequestQuota
from ods.api.resources import Resources
from ods.api.routes import (
    ask,
    audit,
    conversations,
    dataset_specs,
    datasets,
    health,
    knowledge_bases,
    metadata,
    models,
    openai_gateway,
    pipelines,
    query,
    runs,
    tenants,
    webhooks,
)
from ods.api.run_events import PrefectEvents
from ods.api.webhooks import WebhookDispatcher
from ods.domain.object_keys import printable_text
from ods.errors import OdsError
from ods.settings import Settings
from ods.stages.audit import prune_audit

API_VERSION = "1.0.0"
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Bad input (code 40001): the message says what to fix."},
    404: {"model": ErrorEnvelope, "description": "Not found (code 40401)."},
    413: {"model": ErrorEnvelope, "description": "Body over ODS_API__MAX_BODY_BYTES (code 40001)."},
    500: {"model": ErrorEnvelope, "description": "Unexpected (code 50001): quote the request id."},
    503: {"model": ErrorEnvelope, "description": "A component is unavailable (code 50301)."},
}


def create_app(settings: Settings, resources: Resources) -> FastAPI:
    """The API over ``resources``: health, metrics, ``/api/v1`` (datasets, knowledge bases, query,
    models) and the OpenAI-compatible ``/v1``.

    The app closes ``resources`` when the server shuts it down (its lifespan ends): uvicorn re-raises
    SIGTERM once it has stopped, so code after ``Server.run()`` never runs on that path.
    """

    dispatcher = WebhookDispatcher(lambda: resources.catalog, settings.api.webhooks, profile=settings.profile)
    events = PrefectEvents()
    background = BackgroundRuns(
        lambda: resources.catalog,
        lambda kb, tenant: sync_knowledge_base(resources, kb, tenant),
        mode=settings.api.runs,
        emit=events,
    )
    proxy = EndpointProxy()
    metrics = ApiMetrics()
    audit_writer = AuditWriter(lambda: resources.catalog, metrics.registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        recover_runs(background)
        prune_audit(resources.catalog, settings.audit.retention_days)
        try:
            yield
        finally:
            dispatcher.stop()  # an attempt under way finishes; due deliveries wait in the catalog
            background.close()  # the running ingest finishes on the resources before they close
            events.close()  # the runs' Prefect events still queued are sent
            proxy.close()
            audit_writer.close()  # the queued audit rows are written
            resources.close()

    app = FastAPI(
        lifespan=lifespan,
        dependencies=[Depends(authorize_route)],  # every route: its permission of the matrix
        title="ONE-DATA-STUDIO API",
        version=API_VERSION,
        description="Datasets, knowledge bases, SQL and models of ONE-DATA-STUDIO, and an OpenAI-compatible "
        "gateway. `/api/v1/*` answers in the envelope `{code, message, data, request_id, timestamp}`; "
        "`/v1/*` answers in OpenAI's shapes. Every response carries `X-Request-ID`.",
    )
    app.state.resources = resources
    app.state.runs = background
    app.state.webhooks = dispatcher
    app.state.download_signer = downloads.DownloadSigner.from_settings(settings)
    app.state.proxy = proxy
    app.state.table_vectors = metadata.TableVectors()
    app.state.metrics = metrics
    app.state.audit = audit_writer
    app.state.readiness = health.ReadinessCache(settings)
    app.add_middleware(TenantRequestQuota, quotas=settings.quotas)  # inside ApiAccess: reads the principal
    app.add_middleware(ApiAccess, resources=resources, settings=settings)  # inside AuditTrail
    app.add_middleware(  # inside RequestContext: sees the request id, the principal and every answer
        AuditTrail, writer=audit_writer, settings=settings.audit, routes=lambda: app.routes
    )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.api.max_body_bytes,
        max_upload_bytes=settings.api.max_upload_bytes,
        metrics=metrics,
    )
    app.include_router(health.router)
    for router in (
        datasets.router,
        dataset_specs.router,
        knowledge_bases.router,
        query.router,
        models.router,
        metadata.router,
        ask.router,
        conversations.router,
        runs.router,
        pipelines.router,
        webhooks.router,
        tenants.router,
        audit.router,
        downloads.router,
    ):
        app.include_router(router, responses=_ERROR_RESPONSES)
    app.include_router(openai_gateway.router)
    app.include_router(console_router)  # the web console at / (docs/console.md)
    install_login(app, settings, resources)  # /auth/*: the console's OIDC sign-in (ods.api.login)
    _add_error_handlers(app)
    _document_bad_input_as_400(app)
    document_access(app)
    return app


def _document_bad_input_as_400(app: FastAPI) -> None:
    """Drop FastAPI's default 422 responses from the schema: request validation answers 400 here (code
    40001, or OpenAI's invalid_request_error), as every route documents."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(app: FastAPI) -> None:
    async def on_ods_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, OdsError)
        return ods_error_response(request.url.path, error)

    async def on_validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = list(error.errors())
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()))
        reason = str(first.get("msg", "invalid"))
        message = "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
            for problem in problems[:5]
        )
        return bad_input_response(request.url.path, field, f"invalid request: {message}", reason=reason)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        path = request.url.path
        if isinstance(error.__cause__, BodyTooLarge):  # a chunked body passed the limit while parsed
            limit = getattr(
                request.state, "body_limit", request.app.state.resources.settings.api.max_body_bytes
            )
            return body_too_large_response(path, limit)
        if error.status_code == 404:
            return error_response(
                path, NOT_FOUND, f"no route {request.method} {printable_text(path)}; see /docs"
            )
        server_side = error.status_code >= 500
        kind = ErrorKind(
            code=50001 if server_side else 40001,
            status=error.status_code,
            openai_type="server_error" if server_side else "invalid_request_error",
        )
        response = error_response(path, kind, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        return response

    app.add_exception_handler(OdsError, on_ods_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
