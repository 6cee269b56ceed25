"""Searching a knowledge base: dense, BM25 or hybrid (reciprocal-rank fusion), for people and answers.

Interactive callers (`ods kb search`, `ods ask`) use this directly, without a Prefect run, so a question
costs a model load once per process and then milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.milvus.index import FilterValue, SearchHit, SearchMode, VectorIndex
from ods.adapters.models.embedder import Embedder
from ods.errors import OdsError
from ods.factories import build_embedder, open_catalog, open_index
from ods.settings import Settings


@dataclass(frozen=True)
class Retrieval:
    """The passages found for a query, and how close the closest one is in meaning.

    ``best_similarity`` is the cosine of the best dense match (``None`` for BM25-only searches): RRF
    and BM25 scores rank well but say nothing absolute, so relevance is judged on the dense side.
    """

    hits: list[SearchHit]
    best_similarity: float | None


class SearchOptions(TypedDict, total=False):
    """How :func:`search_index` searches (its defaults apply), passed on as they are by
    :func:`search_knowledge_base` and :func:`retrieve_passages`."""

    k: int
    mode: SearchMode
    conditions: Mapping[str, FilterValue] | None


def search_knowledge_base(
    settings: Settings,
    kb: str,
    query: str,
    *,
    min_score: float | None = None,
    **options: Unpack[SearchOptions],
) -> list[SearchHit]:
    """The ``k`` best chunks of ``kb`` for ``query`` (see :func:`retrieve_passages`); hits under
    ``min_score`` are dropped."""
    hits = retrieve_passages(settings, kb, query, **options).hits
    return [hit for hit in hits if min_score is None or hit.score >= min_score]


def retrieve_passages(settings: Settings, kb: str, query: str, **options: Unpack[SearchOptions]) -> Retrieval:
    """The ``k`` best chunks of ``kb`` for ``query`` with the best dense similarity (one embedding call;
    the options and their defaults are :func:`search_index`'s)."""
    _check_query(query)
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
    embedder = build_embedder(settings.embedding)
    index = open_index(settings, record)
    try:
        return search_index(index, embedder, record, query, **options)
    finally:
        index.close()


def search_index(
    index: VectorIndex,
    embedder: Embedder,
    record: KnowledgeBaseRecord,
    query: str,
    *,
    k: int = 5,
    mode: SearchMode = "hybrid",
    conditions: Mapping[str, FilterValue] | None = None,
) -> Retrieval:
    """:func:`retrieve_passages` on an index and an embedder already open (a long-lived server keeps them)."""
    _check_query(query)
    if mode != "bm25" and embedder.model_id != record.embedding_model:
        raise OdsError(
            f"knowledge base {record.name!r} was indexed with {record.embedding_model!r} but "
            f"ODS_EMBEDDING__MODEL is {embedder.model_id!r}; search with the same model or re-ingest"
        )
    vector = embedder.embed([query])[0] if mode != "bm25" else None
    hits = index.search(vector=vector, text=query, mode=mode, k=k, conditions=conditions)
    best: float | None = None
    if mode == "dense":
        best = hits[0].score if hits else None
    elif mode == "hybrid":
        closest = index.search(vector=vector, mode="dense", k=1, conditions=conditions)
        best = closest[0].score if closest else None
    return Retrieval(hits=hits, best_similarity=best)


def _check_query(query: str) -> None:
    if not query.strip():
        raise OdsError("the query is empty; ask something, e.g. ods kb search 'returns policy' --kb docs")


def resolve_documents(settings: Settings, kb: str, names: Sequence[str]) -> list[str]:
    """The URIs of indexed documents of ``kb`` named by URI or by file name (``returns.md``).

    A name that matches no indexed document, or more than one, is an error listing what would match.
    """
    with open_catalog(settings) as catalog:
        uris = [document.uri for document in catalog.documents(kb, "indexed")]
    resolved: list[str] = []
    for name in names:
        if name in uris:
            resolved.append(name)
            continue
        matches = [
            uri for uri in uris if uri.rsplit("/", 1)[-1] == name or uri.endswith("/" + name.lstrip("/"))
        ]
        if len(matches) != 1:
            known = ", ".join(sorted(uri.rsplit("/", 1)[-1] for uri in uris)[:10]) or "none"
            problem = "matches no indexed document" if not matches else f"matches {len(matches)} documents"
            raise OdsError(
                f"--document {name!r} {problem} of knowledge base {kb!r}; give the full URI "
                f"(ods kb documents {kb}) or one of: {known}"
            )
        resolved.append(matches[0])
    return resolved
