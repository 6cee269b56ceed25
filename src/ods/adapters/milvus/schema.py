"""The chunk collection's shape, for ``ods.adapters.milvus.index``: its rows (:class:`ChunkRow` written,
:class:`SearchHit` read), names, schema and indexes, filter expressions, the field limits rows are checked
against, and the conversion of stored fields to hits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from ods.adapters.milvus.client import VectorIndexError
from ods.domain.hashing import stable_id
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.text_analysis import AnalyzerName

if TYPE_CHECKING:
    from pymilvus import MilvusClient

MODEL_ID_PROPERTY = "ods.embedding_model"
DIMENSION_PROPERTY = "ods.embedding_dimension"
FilterValue = str | int | Sequence[str] | Sequence[int]

# Filterable scalar fields and their kinds; anything else in a filter is refused before Milvus sees it.
_FILTER_FIELDS = {
    "id": str,
    "kb": str,
    "doc_uri": str,
    "doc_sha256": str,
    "heading": str,
    "chunk_index": int,
    "page": int,
}
MAX_TEXT_BYTES = 65_535
MAX_URI_BYTES = 4_096
MAX_HEADING_BYTES = 2_048
_NAME_PART = re.compile(r"[^0-9a-zA-Z]+")


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One chunk as stored in the index; ``id`` is ``ods.domain.chunking.chunk_id(kb, uri, sha256, index)``."""

    id: str
    kb: str
    doc_uri: str
    doc_sha256: str
    chunk_index: int
    text: str
    vector: Sequence[float] | NDArray[np.float32]
    page: int | None = None
    heading: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One retrieved chunk; a higher ``score`` is better (cosine, BM25, or RRF for hybrid search)."""

    id: str
    doc_uri: str
    doc_sha256: str
    chunk_index: int
    text: str
    page: int | None
    heading: str | None
    metadata: dict[str, Any]
    score: float


def collection_name(kb: str, model_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """A valid Milvus collection name for ``tenant``'s knowledge base embedded with a model.

    Readable slugs of both, plus a hash of the exact pair so distinct pairs never collide after slugging
    (Milvus names: letters, digits and underscores, starting with a letter, at most 255 characters). The
    default tenant's names are those made before tenants existed (its collections keep their names); any
    other tenant's start with its own slug and hash it in, so tenants never share a collection.
    """
    if not kb.strip() or not model_id.strip():
        raise VectorIndexError(
            f"a collection needs a knowledge base and a model id, got {kb=!r} {model_id=!r}"
        )

    def slug(value: str) -> str:
        return _NAME_PART.sub("_", value).strip("_").lower()[:80] or "x"

    if tenant == DEFAULT_TENANT:
        return f"kb_{slug(kb)}__{slug(model_id)}_{stable_id(kb, model_id, length=10)}"
    digest = stable_id(tenant, kb, model_id, length=10)
    return f"kb_t_{slug(tenant)}__{slug(kb)}__{slug(model_id)}_{digest}"


def milvus_string(value: str) -> str:
    """``value`` as a double-quoted Milvus expression literal.

    Milvus Lite rejects filter templates (``{name}`` with ``filter_params``) and knows only the escapes
    ``\\\\ \\" \\' \\n \\r \\t``; other control characters are accepted raw inside quotes.
    """
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def build_filter(conditions: Mapping[str, FilterValue] | None) -> str:
    """An ``and`` of equality (scalar value) or membership (sequence value) tests on known fields."""
    clauses: list[str] = []
    for name, value in sorted((conditions or {}).items()):
        kind = _FILTER_FIELDS.get(name)
        if kind is None:
            raise VectorIndexError(
                f"cannot filter on {name!r}; filterable fields: {', '.join(_FILTER_FIELDS)}"
            )
        values = [value] if isinstance(value, str | int) else list(value)
        if not values:
            raise VectorIndexError(f"filter {name!r} has an empty list of values; it would match nothing")
        for item in values:
            if isinstance(item, bool) or not isinstance(item, kind):
                raise VectorIndexError(f"filter {name!r} takes {kind.__name__} values, got {item!r}")
        literals = [milvus_string(item) if isinstance(item, str) else str(item) for item in values]
        if isinstance(value, str | int):
            clauses.append(f"{name} == {literals[0]}")
        else:
            clauses.append(f"{name} in [{', '.join(literals)}]")
    return " and ".join(clauses)


def create_chunk_collection(
    client: MilvusClient,
    collection: str,
    *,
    model_id: str,
    dimension: int,
    index_type: Literal["HNSW", "FLAT"],
    analyzer: AnalyzerName | None,
    timeout_s: float,
) -> None:
    """Create ``collection`` with the chunk schema: scalar fields, a ``dense`` vector of ``dimension`` and a
    ``sparse`` one the BM25 function fills from ``text`` (analyzed by ``analyzer``; ``None``: Milvus's
    standard analyzer), their indexes, and the model's id and dimension as collection properties."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(
        auto_id=False,
        enable_dynamic_field=False,
        description=f"ods chunks embedded with {model_id} ({dimension} dims)",
    )
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("kb", DataType.VARCHAR, max_length=512)
    schema.add_field("doc_uri", DataType.VARCHAR, max_length=MAX_URI_BYTES)
    schema.add_field("doc_sha256", DataType.VARCHAR, max_length=64)
    schema.add_field("chunk_index", DataType.INT64)
    # Milvus Lite knows only its standard analyzer (and jieba): it gets none named (``analyzer=None``),
    # and the sparse snapshot applies the index's analyzer. A server analyzes with the named one itself.
    schema.add_field(
        "text",
        DataType.VARCHAR,
        max_length=MAX_TEXT_BYTES,
        enable_analyzer=True,
        **({"analyzer_params": {"type": analyzer}} if analyzer is not None else {}),
    )
    schema.add_field("page", DataType.INT64, nullable=True)
    schema.add_field("heading", DataType.VARCHAR, max_length=MAX_HEADING_BYTES, nullable=True)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    indexes = client.prepare_index_params()
    dense_params = {"M": 16, "efConstruction": 200} if index_type == "HNSW" else {}
    indexes.add_index("dense", index_type=index_type, metric_type="COSINE", params=dense_params)
    indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(
        collection,
        schema=schema,
        index_params=indexes,
        consistency_level="Strong",
        properties={MODEL_ID_PROPERTY: model_id, DIMENSION_PROPERTY: str(dimension)},
        timeout=timeout_s,
    )


def collection_analyzer(description: Mapping[str, Any]) -> str:
    """The analyzer named by the text field of a ``describe_collection`` answer ("standard" when none is:
    Milvus's default)."""
    for field_info in description.get("fields", []):
        if field_info.get("name") != "text":
            continue
        params = field_info.get("params") or {}
        analyzer_params = params.get("analyzer_params")
        if isinstance(analyzer_params, str):
            try:
                analyzer_params = json.loads(analyzer_params)
            except ValueError:
                return "custom"
        if isinstance(analyzer_params, Mapping):
            return str(analyzer_params.get("type") or "custom")
    return "standard"


def truncate_utf8(value: str | None, limit: int) -> str | None:
    """``value`` cut to at most ``limit`` UTF-8 bytes on a character boundary (headings are labels, not content)."""
    if value is None or len(value.encode("utf-8")) <= limit:
        return value
    return value.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def check_chunk_collection(
    description: Mapping[str, Any], *, collection: str, model_id: str, dimension: int
) -> None:
    """Refuse a collection (its ``describe_collection`` answer) that ods did not create, or that holds
    another model's vectors or another dimension."""
    properties = description.get("properties") or {}
    dimensions = [
        int(field_info.get("params", {}).get("dim", 0))
        for field_info in description.get("fields", [])
        if field_info.get("name") == "dense"
    ]
    found_model = properties.get(MODEL_ID_PROPERTY)
    if found_model is None or not dimensions:
        raise VectorIndexError(
            f"collection {collection!r} exists but was not created by ods (no {MODEL_ID_PROPERTY} "
            "property or dense field); choose another knowledge base name or remove it by hand"
        )
    if found_model != model_id or dimensions[0] != dimension:
        raise VectorIndexError(
            f"collection {collection!r} holds {dimensions[0]}-dimensional vectors of model "
            f"{found_model!r}, not {dimension}-dimensional vectors of {model_id!r}; a model "
            "change needs its own collection (use collection_name(kb, model_id)) and a re-embed"
        )


def checked_vector(
    vector: Sequence[float] | NDArray[np.float32], *, collection: str, dimension: int, model_id: str
) -> list[float]:
    """``vector`` as a list of floats, refused unless it has ``dimension`` finite values."""
    values = np.asarray(vector, dtype=np.float32).ravel()
    if values.shape[0] != dimension:
        raise VectorIndexError(
            f"vector has {values.shape[0]} dimensions, collection {collection!r} holds "
            f"{dimension} ({model_id}); embed with the collection's model"
        )
    if not np.all(np.isfinite(values)):
        raise VectorIndexError("vector holds NaN or infinite values; check the embedder's output")
    return values.tolist()


def chunk_record(row: ChunkRow, *, collection: str, dimension: int, model_id: str) -> dict[str, Any]:
    """The entity Milvus stores for ``row``, refused when a field is over its limit or the vector is wrong."""
    for name, value, limit in (
        ("text", row.text, MAX_TEXT_BYTES),
        ("doc_uri", row.doc_uri, MAX_URI_BYTES),
    ):
        if len(value.encode("utf-8")) > limit:
            raise VectorIndexError(
                f"chunk {row.id} of {row.doc_uri[:200]!r}: {name} is {len(value.encode('utf-8'))} bytes, "
                f"over the {limit}-byte limit; chunk smaller or shorten the {name}"
            )
    if not row.id or len(row.id) > 64:
        raise VectorIndexError(f"chunk id {row.id!r} must be 1-64 characters (use chunk_id(...))")
    return {
        "id": row.id,
        "kb": row.kb,
        "doc_uri": row.doc_uri,
        "doc_sha256": row.doc_sha256,
        "chunk_index": row.chunk_index,
        "text": row.text,
        "page": row.page,
        "heading": truncate_utf8(row.heading, MAX_HEADING_BYTES),
        "metadata": dict(row.metadata),
        "dense": checked_vector(row.vector, collection=collection, dimension=dimension, model_id=model_id),
    }


def search_hit(chunk_id: str, fields: Mapping[str, Any], metadata: dict[str, Any], score: float) -> SearchHit:
    """A hit from a chunk's stored fields (Milvus's entity or a snapshot row)."""
    return SearchHit(
        id=chunk_id,
        doc_uri=fields["doc_uri"],
        doc_sha256=fields["doc_sha256"],
        chunk_index=int(fields["chunk_index"]),
        text=fields["text"],
        page=fields.get("page"),
        heading=fields.get("heading"),
        metadata=metadata,
        score=score,
    )


def snapshot_hit(row: Mapping[str, Any], score: float) -> SearchHit:
    """A hit from a dense or sparse snapshot's row."""
    text = row["metadata"]  # stored as JSON text in the snapshot; "{}" for every chunk ingestion writes
    metadata = json.loads(text) if text and text != "{}" else {}
    return search_hit(str(row["id"]), row, metadata, score)


def milvus_hit(hit: Mapping[str, Any], *, absolute: bool) -> SearchHit:
    """A hit from one of Milvus's search results (``absolute``: its distance's magnitude is the score)."""
    entity = hit.get("entity", {})
    score = float(hit["distance"])
    metadata = dict(entity.get("metadata") or {})
    return search_hit(str(hit["id"]), entity, metadata, abs(score) if absolute else score)


# HNSW's search breadth: Milvus's default ef (64) found 87% of the exact top-10 over 100k chunks,
# ef=256 finds 99% at no measurable extra latency (benchmarks/retrieval.py).
HNSW_SEARCH_EF = 256


def dense_search_params(k: int) -> dict[str, Any]:
    """Milvus's search parameters for the dense field's top ``k``."""
    return {"metric_type": "COSINE", "params": {"ef": max(HNSW_SEARCH_EF, k)}}
