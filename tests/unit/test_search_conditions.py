"""The index conditions a search's documents, headings and pages become (``search_conditions``)."""

from __future__ import annotations

import pytest

from ods.adapters.milvus.schema import MAX_HEADING_BYTES, build_filter
from ods.errors import OdsError
from ods.settings import get_settings
from ods.stages.retrieve import MAX_HEADING_FILTERS, MAX_PAGE_FILTERS, search_conditions


def test_nothing_named_limits_nothing() -> None:
    assert search_conditions(get_settings(), "docs") is None
    assert search_conditions(get_settings(), "docs", documents=[], headings=[], pages=[]) is None


def test_headings_and_pages_are_any_of_each_and_all_of_both() -> None:
    conditions = search_conditions(
        get_settings(), "docs", headings=["Refunds", "Exceptions", "Refunds"], pages=[2, 1, 2]
    )

    assert conditions == {"heading": ["Refunds", "Exceptions"], "page": [2, 1]}
    assert build_filter(conditions) == 'heading in ["Refunds", "Exceptions"] and page in [2, 1]'


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"pages": [0]}, "page 0 is not a page number; pages count from 1"),
        ({"pages": [1] * (MAX_PAGE_FILTERS + 1)}, f"201 pages to search in; at most {MAX_PAGE_FILTERS}"),
        ({"headings": ["h"] * (MAX_HEADING_FILTERS + 1)}, "51 headings to search in; at most 50"),
        ({"headings": ["é" * (MAX_HEADING_BYTES // 2 + 1)]}, "is longer than 2,048 bytes"),
    ],
)
def test_a_value_out_of_bounds_is_an_ods_error(limits: dict[str, list[object]], message: str) -> None:
    with pytest.raises(OdsError, match=message):
        search_conditions(get_settings(), "docs", **limits)  # type: ignore[arg-type]


def test_documents_are_resolved_through_the_catalog() -> None:
    with pytest.raises(OdsError, match="no knowledge base named 'docs'"):
        search_conditions(get_settings(), "docs", documents=["nope.md"], headings=["Refunds"])
