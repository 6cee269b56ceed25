"""The metadata search's kept vectors: embedded once per table version, in one batch, dropped when gone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ods.api.routes.metadata import MetadataTable, TableVectors
from ods.domain.text_to_sql import ColumnDescription, TableDescription


class CountingEmbedder:
    """A fake embedder: one 4-dimensional row per text, remembering each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.batches.append(list(texts))
        return np.arange(len(texts) * 4, dtype=np.float32).reshape(len(texts), 4)


def table(name: str, columns: Sequence[str], version_id: int) -> MetadataTable:
    description = TableDescription(
        name=name,
        dataset=f"{name}@{version_id}",
        row_count=10,
        columns=tuple(ColumnDescription(name=column, type="BIGINT") for column in columns),
    )
    return MetadataTable(database="datasets", description=description, key=(version_id,))


def test_tables_are_embedded_once_per_version_in_one_batch() -> None:
    embedder, vectors = CountingEmbedder(), TableVectors()
    sales, tickets = table("sales", ["region", "revenue"], 1), table("tickets", ["priority"], 2)

    first = vectors.of([sales, tickets], embedder.embed)
    again = vectors.of([sales, tickets], embedder.embed)
    new_version = vectors.of([sales, table("tickets", ["priority", "refund"], 3)], embedder.embed)

    assert [len(batch) for batch in embedder.batches] == [5, 3]  # 2 tables + 3 columns; then tickets v3 only
    assert embedder.batches[1][0].startswith("table tickets") and "refund" in embedder.batches[1][0]
    assert [matrix.shape for _, matrix in first] == [(2, 4), (1, 4)]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert new_version[1][1].shape == (2, 4)


def test_a_table_no_longer_listed_is_forgotten() -> None:
    embedder, vectors = CountingEmbedder(), TableVectors()
    sales, tickets = table("sales", ["region"], 1), table("tickets", ["priority"], 2)
    vectors.of([sales, tickets], embedder.embed)

    vectors.of([sales], embedder.embed)  # tickets archived
    vectors.of([sales, tickets], embedder.embed)

    assert [len(batch) for batch in embedder.batches] == [4, 2]  # tickets embedded again, sales kept
