"""The model card: a markdown page a person reads to trust a model version (what data, what settings, how good)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ods.domain.dataset_card import markdown_table


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_model_card(
    *,
    name: str,
    version: int | None,
    trainer: str,
    artifact_uri: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    lineage: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
) -> str:
    """Markdown with the held-out metrics, the data lineage, every parameter and the trainer's details.

    ``version`` is ``None`` for the card stored with the artifacts, which are written before the catalog
    assigns the version number.
    """
    title = f"# Model `{name}`" + (f" v{version}" if version is not None else "")
    parts = [
        title,
        f"**Trainer:** `{trainer}` · **artifacts:** `{artifact_uri}`",
        "## Metrics (held-out split)",
        markdown_table(
            [{"metric": key, "value": _number(value)} for key, value in sorted(metrics.items())],
            ["metric", "value"],
        ),
        "## Lineage",
        markdown_table(
            [{"field": key, "value": value} for key, value in lineage.items() if value is not None],
            ["field", "value"],
        ),
        "## Parameters",
        markdown_table(
            [{"parameter": key, "value": value} for key, value in sorted(params.items())],
            ["parameter", "value"],
        ),
    ]
    if details:
        parts += [
            "## Training details",
            markdown_table(
                [{"detail": key, "value": value} for key, value in details.items() if value is not None],
                ["detail", "value"],
            ),
        ]
    return "\n\n".join(parts) + "\n"
