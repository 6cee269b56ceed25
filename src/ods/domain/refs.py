"""``NAME@VERSION`` references to dataset and model versions: parsed and written in one place."""

from __future__ import annotations

from ods.errors import OdsError


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` → (name, version or None for the newest registered)."""
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise OdsError(f"{ref!r}: the version after '@' must be a positive number, e.g. {name}@1")
    return name, int(version)


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` → (name, version or None for the newest registered)."""
    return parse_dataset_ref(ref)


def format_ref(name: str, version: int) -> str:
    """The ``NAME@VERSION`` reference of a dataset or model version."""
    return f"{name}@{version}"
