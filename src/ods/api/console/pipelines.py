"""The pipelines graph laid out for an inline SVG: schedules and the events of prefect.yaml's triggers start
deployments, a deployment's flow emits events that start the next (object created → prepare-dataset →
dataset registered → train-model → …). Columns by the longest chain from a starting point, computed here
so the browser only draws it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ods.api.console.lineage import NODE_HEIGHT, NODE_WIDTH, Edge, LineageGraph, Node, short_label

COLUMN_WIDTH = 200
ROW_HEIGHT = 60
MARGIN = 12


def lay_out_pipelines(deployments: list[dict[str, Any]]) -> LineageGraph:
    """The graph of ``deployments`` (the API's ``/api/v1/pipelines`` items)."""
    found: dict[str, tuple[str, str, str, str | None, str]] = {}  # key: kind, label, detail, href, title
    links: list[tuple[str, str]] = []
    triggers: list[tuple[str, set[str]]] = []
    for deployment in deployments:
        name = deployment["name"]
        key = f"deployment:{name}"
        runs = deployment.get("runs")
        detail = runs[0]["state"] if runs else "no runs shown"
        title = f"{deployment['full_name']}: {deployment.get('description', '')}"
        found[key] = ("deployment", name, detail, f"#deployment-{name}", title)
        for index, schedule in enumerate(deployment.get("schedules", [])):
            start = f"schedule:{name}:{index}"
            state = "active" if schedule.get("active", True) else "paused"
            found[start] = (
                "schedule",
                schedule["label"],
                state,
                None,
                f"{schedule['label']} ({state}): {name}",
            )
            links.append((start, key))
        for index, trigger in enumerate(deployment.get("triggers", [])):
            start = f"event:{name}:{index}"
            condition = trigger.get("condition") or "any"
            state = "" if trigger.get("enabled", True) else " (disabled)"
            found[start] = (
                "event",
                trigger["label"],
                condition + state,
                None,
                f"{' or '.join(trigger['expect'])} where {condition} starts {name}{state}",
            )
            links.append((start, key))
            triggers.append((start, set(trigger["expect"])))
    for deployment in deployments:
        emitted = set(deployment.get("emits", []))
        links.extend(
            (f"deployment:{deployment['name']}", start) for start, expect in triggers if emitted & expect
        )
    depth = _depths(list(found), links)
    columns: dict[int, list[str]] = {}
    for key in found:
        columns.setdefault(depth[key], []).append(key)
    nodes: dict[str, Node] = {}
    for column, keys in sorted(columns.items()):
        for row, key in enumerate(keys):
            kind, label, detail, href, title = found[key]
            nodes[key] = Node(
                key,
                kind,
                short_label(label),
                short_label(detail, 28),
                MARGIN + column * COLUMN_WIDTH,
                MARGIN + row * ROW_HEIGHT,
                href,
                title,
            )
    edges = [Edge(_curve(nodes[start], nodes[end])) for start, end in links]
    rows = max((len(keys) for keys in columns.values()), default=1)
    return LineageGraph(
        nodes=list(nodes.values()),
        edges=edges,
        width=2 * MARGIN + max(columns, default=0) * COLUMN_WIDTH + NODE_WIDTH,
        height=2 * MARGIN + (rows - 1) * ROW_HEIGHT + NODE_HEIGHT,
    )


def _depths(keys: list[str], links: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: the longest chain of links leading to it (a cycle stops growing after one pass
    per node)."""
    depth = dict.fromkeys(keys, 0)
    for _ in keys:
        changed = False
        for start, end in links:
            if depth[end] < depth[start] + 1 <= len(keys):
                depth[end] = depth[start] + 1
                changed = True
        if not changed:
            break
    return depth


def _curve(start: Node, end: Node) -> str:
    x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
    x2, y2 = end.x, end.y + NODE_HEIGHT // 2
    if x2 <= x1:  # a link back to an earlier column goes under the nodes
        low = max(y1, y2) + NODE_HEIGHT
        return f"M{x1},{y1} C{x1 + 40},{low} {x2 - 40},{low} {x2},{y2}"
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"


@dataclass(frozen=True)
class FormField:
    """One input of a deployment's run form, from a property of its parameter schema."""

    name: str
    label: str
    kind: str  # boolean, integer, number, string, choice or json
    required: bool
    value: str
    checked: bool = False
    options: tuple[str, ...] = ()
    description: str = ""


def run_form_fields(schema: dict[str, Any], defaults: dict[str, Any]) -> list[FormField]:
    """The run form of a deployment: one field per property of its parameter schema (an OpenAPI schema as
    Prefect stores it), filled with prefect.yaml's parameters, else the schema's defaults. A type the form
    cannot hold in one input (objects, lists, unions of them) is a JSON text box."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind, options = _kind(prop, schema.get("definitions") or schema.get("$defs") or {})
        default = defaults.get(name, prop.get("default"))
        if kind == "json":
            value = "" if default is None else json.dumps(default)
        else:
            value = "" if default is None else str(default)
        fields.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name),
                kind=kind,
                required=name in required,
                value=value,
                checked=default is True,
                options=options,
                description=str(prop.get("description") or ""),
            )
        )
    return fields


def _kind(prop: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    reference = prop.get("$ref") or next((item.get("$ref") for item in prop.get("allOf", [])), None)
    if isinstance(reference, str):
        prop = definitions.get(reference.rsplit("/", 1)[-1], {})
    if "enum" in prop:
        return "choice", tuple(str(option) for option in prop["enum"])
    types = [prop.get("type")] + [item.get("type") for item in prop.get("anyOf", [])]
    wanted = [kind for kind in types if kind and kind != "null"]
    if len(wanted) == 1 and wanted[0] in ("boolean", "integer", "number", "string"):
        return str(wanted[0]), ()
    return "json", ()
