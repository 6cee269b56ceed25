"""The dataset card: a markdown page a person reads to trust a dataset version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:120]


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _percent(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


def render_dataset_card(
    *,
    name: str,
    version: int | None,
    status: str,
    uri: str | None,
    rows_in: int,
    profile: Mapping[str, Any],
    cleaning: Sequence[Mapping[str, Any]],
    validation: Sequence[Mapping[str, Any]],
    lineage: Mapping[str, Any],
    description: str = "",
) -> str:
    """Markdown with schema and profile, cleaning counts, validation results and lineage."""
    columns = profile.get("columns", {})
    profile_rows = [
        {
            "column": column,
            "type": stats.get("dtype"),
            "nulls": _percent(stats.get("null_rate")),
            "distinct": stats.get("distinct_count"),
            "min": stats.get("min"),
            "max": stats.get("max"),
            "mean": None if stats.get("mean") is None else round(float(stats["mean"]), 4),
            "top": ", ".join(f"{item['value']} ({item['count']})" for item in stats.get("top_values") or [])[
                :100
            ],
            "pii": stats.get("pii_kind"),
        }
        for column, stats in columns.items()
    ]
    title = f"# Dataset `{name}`" + (f" v{version}" if version is not None else "")
    parts = [
        title,
        description,
        f"**Status:** {status} · **rows:** {rows_in} in → {profile.get('row_count')} out"
        + (f" · **stored at:** `{uri}`" if uri else ""),
        "## Schema and profile",
        markdown_table(
            profile_rows, ["column", "type", "nulls", "distinct", "min", "max", "mean", "top", "pii"]
        ),
        "## Cleaning",
        markdown_table(
            cleaning,
            [
                "step",
                "rule",
                "columns",
                "changed",
                "nulled",
                "unparseable",
                "rows_dropped",
                "columns_dropped",
                "examples",
            ],
        )
        if cleaning
        else "No cleaning rules.",
        "## Validation",
        markdown_table(validation, ["expectation", "column", "success", "unexpected_count", "details"])
        if validation
        else "No expectations.",
        "## Lineage",
        markdown_table(
            [{"field": key, "value": value} for key, value in lineage.items()], ["field", "value"]
        ),
    ]
    return "\n\n".join(part for part in parts if part)
