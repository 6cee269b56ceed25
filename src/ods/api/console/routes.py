"""The console's pages: each one calls the API's routes as its caller (``ConsoleApi``) and renders a
Jinja2 template; the browser's JavaScript (``static/console.js``) streams answers, uploads documents and
calls the API's write routes itself.

Every page and asset answers with a Content-Security-Policy that allows only this origin: no inline
script or style, no request to any other host.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ods.api.console.api_client import Answer, ConsoleApi
from ods.api.console.lineage import NODE_FILLS, NODE_HEIGHT, NODE_WIDTH, lay_out_kb_lineage, lay_out_lineage
from ods.api.console.pipelines import lay_out_pipelines, run_form_fields
from ods.api.envelope import NOT_FOUND, error_response
from ods.domain.identity import Principal
from ods.domain.permissions import is_allowed

router = APIRouter(include_in_schema=False)

HERE: Final = Path(__file__).parent
STATIC_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
PREVIEW_ROWS: Final = 20
NAV: Final = (
    ("home", "/", "Home"),
    ("datasets", "/console/datasets", "Datasets"),
    ("knowledge", "/console/knowledge-bases", "Knowledge bases"),
    ("chat", "/console/chat", "Chat"),
    ("models", "/console/models", "Models"),
    ("metadata", "/console/metadata", "Metadata"),
    ("pipelines", "/console/pipelines", "Pipelines"),
    ("specs", "/console/specs", "Dataset specs"),
)


@functools.cache
def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        nav=NAV,
        node_width=NODE_WIDTH,
        node_height=NODE_HEIGHT,
        node_fills=NODE_FILLS,
        run_form_fields=run_form_fields,
    )
    environment.filters["file_name"] = lambda uri: str(uri or "").rstrip("/").rsplit("/", 1)[-1]
    environment.filters["when"] = lambda stamp: str(stamp or "")[:16].replace("T", " ")  # to the minute, UTC
    environment.filters["percent"] = lambda share: f"{100 * float(share or 0):.1f}%"
    return environment


def _segment(value: object) -> str:
    """``value`` as one path segment of an API call (a ``/``, ``?`` or ``#`` in a name stays in the name)."""
    return quote(str(value), safe="")


def _roles(request: Request) -> frozenset[str]:
    principal: Principal | None = getattr(request.state, "principal", None)
    return frozenset(principal.roles) if principal is not None else frozenset()


def _page(request: Request, template: str, active: str, **context: Any) -> HTMLResponse:
    """``template`` rendered for ``request``'s caller: ``can(permission)`` hides controls a role may not use
    (the API refuses them anyway)."""
    roles = _roles(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    html = (
        _templates()
        .get_template(template)
        .render(
            active=active,
            can=lambda permission: is_allowed(roles, permission),
            who=principal,
            **context,
        )
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/console/static/{name}")
def static_asset(name: str) -> Response:
    """The console's own CSS and JavaScript (nothing is loaded from another host)."""
    path = HERE / "static" / name
    media_type = STATIC_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or media_type is None or not path.is_file():
        return error_response(f"/console/static/{name}", NOT_FOUND, f"no console asset named {name!r}")
    return FileResponse(
        path, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    )


@router.get("/")
async def home(request: Request) -> HTMLResponse:
    """Counts, readiness, recent runs and recent questions."""
    async with ConsoleApi(request) as api:
        datasets, kbs, models, runs, conversations, ready = await asyncio.gather(
            api.get("/api/v1/datasets", page_size=200),
            api.get("/api/v1/knowledge-bases"),
            api.get("/api/v1/models"),
            api.get("/api/v1/runs", limit=10),
            api.get("/api/v1/conversations"),
            api.get("/readyz"),
        )
        kb_details = await asyncio.gather(
            *(api.get(f"/api/v1/knowledge-bases/{_segment(kb['name'])}") for kb in kbs.data or [])
        )
        model_details = await asyncio.gather(
            *(api.get(f"/api/v1/models/{_segment(m['name'])}") for m in models.data or [])
        )
    counts = {
        "datasets": (datasets.data or {}).get("total", 0) if datasets.ok else None,
        "versions": sum(item.get("version_count", 0) for item in (datasets.data or {}).get("items", []))
        if datasets.ok
        else None,
        "knowledge bases": len(kbs.data or []) if kbs.ok else None,
        "documents": sum(sum((d.data or {}).get("documents", {}).values()) for d in kb_details)
        if kbs.ok
        else None,
        "models": len(models.data or []) if models.ok else None,
        "endpoints": sum(
            1
            for d in model_details
            for e in (d.data or {}).get("endpoints", [])
            if e.get("status") == "active"
        )
        if models.ok
        else None,
    }
    return _page(
        request,
        "home.html",
        "home",
        counts=counts,
        ready=ready,
        runs=runs,
        conversations=Answer(data=(conversations.data or [])[:8], error=conversations.error),
    )


@router.get("/console/datasets")
async def datasets_page(request: Request, q: str = "", tags: str = "", status: str = "") -> HTMLResponse:
    """Datasets with a name/description search, tag and status filters."""
    async with ConsoleApi(request) as api:
        listed = await api.get("/api/v1/datasets", page_size=200, tags=tags, status=status)
    items = (listed.data or {}).get("items", [])
    if q:
        needle = q.casefold()
        items = [
            i
            for i in items
            if needle in i["name"].casefold() or needle in (i.get("description") or "").casefold()
        ]
    return _page(
        request, "datasets.html", "datasets", listed=listed, items=items, q=q, tags=tags, status=status
    )


@router.get("/console/datasets/{name}")
async def dataset_page(
    request: Request, name: str, version: int | None = None, offset: int = 0
) -> HTMLResponse:
    """One version: schema, profile with charts, validation, card, a paged preview and the lineage graph."""
    async with ConsoleApi(request) as api:
        detail = await api.get(f"/api/v1/datasets/{_segment(name)}")
        if not detail.ok:
            return _page(request, "error.html", "datasets", title=f"Dataset {name}", error=detail.error)
        versions = detail.data["versions"]
        chosen = next((v for v in versions if v["version"] == version), versions[0] if versions else None)
        offset = max(offset, 0)
        rows = (
            await api.get(
                f"/api/v1/datasets/{_segment(name)}/versions/{_segment(chosen['version'])}/rows",
                offset=offset,
                limit=PREVIEW_ROWS,
            )
            if chosen
            else Answer(error="no version")
        )
        models = await api.get("/api/v1/models")
        details = await asyncio.gather(
            *(api.get(f"/api/v1/models/{_segment(m['name'])}") for m in models.data or [])
        )
    graph = lay_out_lineage(detail.data, [d.data for d in details if d.ok])
    return _page(
        request,
        "dataset.html",
        "datasets",
        dataset=detail.data,
        version=chosen,
        rows=rows,
        offset=offset,
        page_rows=PREVIEW_ROWS,
        graph=graph,
        models_error=models.error,
    )


@router.get("/console/knowledge-bases")
async def knowledge_bases_page(request: Request) -> HTMLResponse:
    async with ConsoleApi(request) as api:
        kbs = await api.get("/api/v1/knowledge-bases")
    return _page(request, "knowledge_bases.html", "knowledge", kbs=kbs)


@router.get("/console/knowledge-bases/{kb}")
async def knowledge_base_page(
    request: Request,
    kb: str,
    q: str = "",
    mode: str = "hybrid",
    document: str = "",
    heading: str = "",
    page: str = "",
    top_k: str = "8",
    min_score: str = "",
) -> HTMLResponse:
    """Documents with status and reason, upload, delete, and a search box with its mode and filters (one
    document, heading and page, how many chunks, the least score); the search route checks them and its
    refusal shows."""
    search: dict[str, object] = {"query": q, "mode": mode, "top_k": top_k}
    if document:
        search["documents"] = [document]
    if heading:
        search["headings"] = [heading]
    if page:
        search["pages"] = [page]
    if min_score:
        search["min_score"] = min_score
    async with ConsoleApi(request) as api:
        detail = await api.get(f"/api/v1/knowledge-bases/{_segment(kb)}")
        if not detail.ok:
            return _page(request, "error.html", "knowledge", title=f"Knowledge base {kb}", error=detail.error)
        documents = await api.get(f"/api/v1/knowledge-bases/{_segment(kb)}/documents")
        hits = await api.post(f"/api/v1/knowledge-bases/{_segment(kb)}/search", search) if q else None
        runs = await api.get("/api/v1/runs", target=kb, limit=5)
    return _page(
        request,
        "knowledge_base.html",
        "knowledge",
        kb=detail.data,
        documents=documents,
        q=q,
        mode=mode,
        document=document,
        heading=heading,
        page=page,
        top_k=top_k,
        min_score=min_score,
        hits=hits,
        runs=runs,
    )


@router.get("/console/knowledge-bases/{kb}/lineage")
async def knowledge_base_lineage_page(request: Request, kb: str) -> HTMLResponse:
    """Documents → the chunks answers cited → the conversations that cited them, as a graph and a table."""
    async with ConsoleApi(request) as api:
        lineage = await api.get(f"/api/v1/knowledge-bases/{_segment(kb)}/lineage")
    if not lineage.ok:
        return _page(request, "error.html", "knowledge", title=f"Knowledge base {kb}", error=lineage.error)
    return _page(
        request,
        "kb_lineage.html",
        "knowledge",
        kb=kb,
        lineage=lineage,
        graph=lay_out_kb_lineage(lineage.data),
    )


@router.get("/console/chat")
async def chat_page(request: Request, c: str = "") -> HTMLResponse:
    """The conversation list and one conversation; asking streams from ``/api/v1/ask`` in the browser."""
    async with ConsoleApi(request) as api:
        conversations, kbs, datasets = await asyncio.gather(
            api.get("/api/v1/conversations"),
            api.get("/api/v1/knowledge-bases"),
            api.get("/api/v1/datasets", page_size=200),
        )
        conversation = await api.get(f"/api/v1/conversations/{_segment(c)}") if c else None
    return _page(
        request,
        "chat.html",
        "chat",
        conversations=conversations,
        conversation=conversation,
        current=c,
        kbs=kbs.data or [],
        datasets=(datasets.data or {}).get("items", []),
    )


@router.get("/console/models")
async def models_page(request: Request) -> HTMLResponse:
    """Each model's versions with metrics and training data, its endpoints with health."""
    async with ConsoleApi(request) as api:
        models = await api.get("/api/v1/models")
        names = [m["name"] for m in models.data or []]
        details = await asyncio.gather(*(api.get(f"/api/v1/models/{_segment(name)}") for name in names))
        health = await asyncio.gather(*(api.get(f"/api/v1/models/{_segment(name)}/status") for name in names))
    return _page(
        request,
        "models.html",
        "models",
        models=models,
        entries=list(zip(names, details, health, strict=True)),
    )


@router.get("/console/metadata")
async def metadata_page(request: Request, db: str = "", table: str = "", q: str = "") -> HTMLResponse:
    """Databases → tables → columns, semantic table search and the guarded SQL box."""
    async with ConsoleApi(request) as api:
        databases = await api.get("/api/v1/metadata/databases")
        tables = await api.get(f"/api/v1/metadata/databases/{_segment(db)}/tables") if db else None
        columns = (
            await api.get(f"/api/v1/metadata/databases/{_segment(db)}/tables/{_segment(table)}")
            if db and table
            else None
        )
        found = await api.post("/api/v1/metadata/tables/search", {"query": q}) if q else None
    return _page(
        request,
        "metadata.html",
        "metadata",
        databases=databases,
        tables=tables,
        columns=columns,
        db=db,
        table=table,
        q=q,
        found=found,
    )


STARTER_SPEC: Final = """name: my_dataset
description: What the table holds, for people
source:
  uri: my_dataset.csv   # beside the spec under the watched raw prefix, or s3://bucket/key
steps:
  - deduplicate: {}
expectations:
  - row_count: {min: 1}
"""


@router.get("/console/specs")
async def spec_editor_page(request: Request, name: str = "") -> HTMLResponse:
    """The dataset-spec editor: YAML with inline problems, a dry run on the first rows of its raw table,
    and Save to the watched raw prefix (``/api/v1/dataset-specs``, called by the browser)."""
    stored = None
    if name:
        async with ConsoleApi(request) as api:
            stored = await api.get(f"/api/v1/dataset-specs/{_segment(name)}")
    text = (stored.data or {}).get("spec") if stored is not None and stored.ok else None
    return _page(
        request,
        "specs.html",
        "specs",
        name=name,
        text=text or STARTER_SPEC,
        stored=stored if stored is not None and stored.status != 404 else None,
        missing=stored is not None and stored.status == 404,
    )


@router.get("/console/pipelines")
async def pipelines_page(request: Request) -> HTMLResponse:
    """prefect.yaml's deployments and triggers as a graph, each with its last runs on the Prefect server;
    without one, the server's own runs."""
    async with ConsoleApi(request) as api:
        pipelines = await api.get("/api/v1/pipelines")
        configured = bool((pipelines.data or {}).get("prefect_configured"))
        runs = None if configured else await api.get("/api/v1/runs", limit=10)
    deployments = (pipelines.data or {}).get("deployments", []) if pipelines.ok else []
    return _page(
        request,
        "pipelines.html",
        "pipelines",
        pipelines=pipelines,
        deployments=deployments,
        graph=lay_out_pipelines(deployments),
        runs=runs,
    )
