"""Lineage graphs laid out for an inline SVG, one column per stage, computed here so the browser only draws
them: a dataset's (raw source → dataset versions → model versions → endpoints) and a knowledge base's
(documents → the chunks answers cited → the conversations that cited them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COLUMN_WIDTH = 220
NODE_WIDTH = 180
NODE_HEIGHT = 44
ROW_HEIGHT = 64
MARGIN = 12
STAGES = ("source", "dataset", "model", "endpoint")
KB_STAGES = ("document", "chunk", "conversation")
NODE_FILLS = {
    "source": "#eef2f7",
    "dataset": "#e3eefc",
    "model": "#e9f6ec",
    "endpoint": "#fdf1e1",
    "document": "#eef2f7",
    "chunk": "#e3eefc",
    "conversation": "#e9f6ec",
    "schedule": "#eef2f7",  # the pipelines graph's kinds
    "event": "#fdf1e1",
    "deployment": "#e3eefc",
}
Column = list[tuple[str, str, str, str | None]]
"""A stage's nodes: key, label, detail, link."""


@dataclass(frozen=True)
class Node:
    key: str
    kind: str  # its stage (source … conversation), or in the pipelines graph schedule, event, deployment
    label: str
    detail: str
    x: int
    y: int
    href: str | None = None
    title: str = ""  # the full text behind a shortened label (a tooltip)


@dataclass(frozen=True)
class Edge:
    path: str  # an SVG path from the right side of one node to the left side of the next


@dataclass(frozen=True)
class LineageGraph:
    """Nodes placed in columns and the edges between them: what the console's ``lineage_svg`` macro draws."""

    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def lay_out_lineage(dataset: dict[str, Any], models: list[dict[str, Any]]) -> LineageGraph:
    """The graph of ``dataset`` (the API's dataset detail) and the ``models`` (model details) trained on any
    of its versions; nodes in columns by stage, rows in order of appearance."""
    name = dataset["name"]
    columns: dict[str, Column] = {stage: [] for stage in STAGES}
    links: list[tuple[str, str]] = []
    sources: dict[str, str] = {}
    titles: dict[str, str] = {}
    for version in sorted(dataset.get("versions", []), key=lambda item: item["version"]):
        key = f"dataset:{version['id']}"
        columns["dataset"].append(
            (
                key,
                f"{name}@{version['version']}",
                str(version["status"]),
                f"/console/datasets/{name}?version={version['version']}",
            )
        )
        source = (version.get("lineage") or {}).get("source_uri") or "unknown source"
        if source not in sources:
            sources[source] = f"source:{len(sources)}"
            columns["source"].append((sources[source], _short(source.rsplit("/", 1)[-1]), "raw", None))
            titles[sources[source]] = source
        links.append((sources[source], key))
        for parent in (version.get("lineage") or {}).get("parent_version_ids", []):
            links.append((f"dataset:{parent}", key))
    for model in models:
        for model_version in model.get("versions", []):
            trained_on = model_version.get("trained_on") or {}
            if trained_on.get("dataset") != name:
                continue
            key = f"model:{model['name']}:{model_version['version']}"
            columns["model"].append(
                (
                    key,
                    f"{model['name']}@{model_version['version']}",
                    str(model_version.get("trainer", "")),
                    "/console/models#model-" + model["name"],
                )
            )
            links.append((f"dataset:{trained_on.get('dataset_version_id')}", key))
            for endpoint in model.get("endpoints", []):
                if endpoint.get("model_version") != model_version["version"]:
                    continue
                endpoint_key = f"endpoint:{endpoint['id']}"
                columns["endpoint"].append(
                    (
                        endpoint_key,
                        f"{endpoint.get('backend', '')} #{endpoint['id']}",
                        str(endpoint.get("status", "")),
                        "/console/models#model-" + model["name"],
                    )
                )
                links.append((key, endpoint_key))
    return _graph(STAGES, columns, links, titles)


def lay_out_kb_lineage(lineage: dict[str, Any]) -> LineageGraph:
    """The graph of a knowledge base (the API's ``/lineage`` answer): each document, each chunk an answer
    cited, each conversation citing it; a citation whose chunk left the catalog hangs on its document
    version."""
    kb = lineage["knowledge_base"]
    columns: dict[str, Column] = {stage: [] for stage in KB_STAGES}
    links: list[tuple[str, str]] = []
    titles: dict[str, str] = {}
    for document in lineage.get("documents", []):
        key = f"document:{document['id']}"
        name = str(document["uri"]).rstrip("/").rsplit("/", 1)[-1]
        columns["document"].append(
            (key, _short(name), f"{document['status']}, {document['chunk_count']} chunks", None)
        )
        titles[key] = str(document["uri"])
    seen: set[str] = set()
    for citation in lineage.get("citations", []):
        document_key = f"document:{citation['document_id']}"
        if citation.get("chunk_id"):
            chunk_key = f"chunk:{citation['chunk_id']}"
            where = [f"page {citation['page']}"] if citation.get("page") else []
            where += [str(citation["heading"])] if citation.get("heading") else []
            label, detail = f"chunk #{citation['chunk_index']}", " · ".join(where) or "cited"
        else:
            chunk_key = f"version:{citation['document_version_id']}"
            label, detail = f"version #{citation['document_version_id']}", "chunk no longer kept"
        conversation_key = f"conversation:{citation['conversation_id']}"
        if chunk_key not in seen:
            seen.add(chunk_key)
            columns["chunk"].append(
                (
                    chunk_key,
                    label,
                    _short(detail, 22),
                    f"/console/knowledge-bases/{kb}#doc-{citation['document_id']}",
                )
            )
            titles[chunk_key] = f"{label} of {citation['document_uri']}: {detail}"
        if conversation_key not in seen:
            seen.add(conversation_key)
            title = str(citation["conversation_title"])
            columns["conversation"].append(
                (
                    conversation_key,
                    short_label(title),
                    _cited_times(lineage["citations"], citation["conversation_id"]),
                    f"/console/chat?c={citation['conversation_id']}",
                )
            )
            titles[conversation_key] = title
        for link in ((document_key, chunk_key), (chunk_key, conversation_key)):
            if link not in links:
                links.append(link)
    return _graph(KB_STAGES, columns, links, titles)


def _cited_times(citations: list[dict[str, Any]], conversation_id: str) -> str:
    answers = {c["message_id"] for c in citations if c["conversation_id"] == conversation_id}
    return f"{len(answers)} answer{'s' if len(answers) != 1 else ''} citing"


def short_label(text: str, limit: int = 24) -> str:
    """``text`` cut to ``limit`` characters, keeping its start."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _graph(
    stages: tuple[str, ...], columns: dict[str, Column], links: list[tuple[str, str]], titles: dict[str, str]
) -> LineageGraph:
    nodes: dict[str, Node] = {}
    for index, stage in enumerate(stages):
        for row, (key, label, detail, href) in enumerate(columns[stage]):
            nodes[key] = Node(
                key,
                stage,
                label,
                detail,
                MARGIN + index * COLUMN_WIDTH,
                MARGIN + row * ROW_HEIGHT,
                href,
                titles.get(key, f"{label} ({stage}, {detail})"),
            )
    edges = [
        Edge(_curve(nodes[start], nodes[end])) for start, end in links if start in nodes and end in nodes
    ]
    rows = max((len(items) for items in columns.values()), default=1) or 1
    return LineageGraph(
        nodes=list(nodes.values()),
        edges=edges,
        width=2 * MARGIN + (len(stages) - 1) * COLUMN_WIDTH + NODE_WIDTH,
        height=2 * MARGIN + (rows - 1) * ROW_HEIGHT + NODE_HEIGHT,
    )


def _curve(start: Node, end: Node) -> str:
    x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
    x2, y2 = end.x, end.y + NODE_HEIGHT // 2
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
