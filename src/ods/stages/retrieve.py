"""Searching a knowledge base: dense, BM25 or hybrid (the two lists fused here), for people and answers.

Interactive callers (`ods kb search`, `ods ask`) use this directly, without a Prefect run, so a question
costs a model load once per process and then milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.milvus.index import SearchMode, VectorIndex
from ods.adapters.milvus.schema import MAX_HEADING_BYTES, FilterValue, SearchHit
from ods.adapters.models.embedder import Embedder
from ods.domain.rank_fusion import convex_combination, reciprocal_rank_fusion
from ods.errors import OdsError
from ods.factories import build_embedder, open_catalog, open_index
from ods.settings import SearchSettings, Settings


@dataclass(frozen=True)
class Retrieval:
    """The passages found for a query, and how close the closest one is in meaning.

    ``best_similarity`` is the cosine of the best dense match (``None`` for BM25-only searches): RRF
    and BM25 scores rank well but say nothing absolute, so relevance is judged on the dense side.
    """

    hits: list[SearchHit]
    best_similarity: float | None
    how: str = ""
    """How the search ranked, in one line (:func:`describe_search`): its mode, BM25 analyzer and fusion."""


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
        return search_index(index, embedder, record, query, search=settings.search, **options)
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
    search: SearchSettings | None = None,
) -> Retrieval:
    """:func:`retrieve_passages` on an index and an embedder already open (a long-lived server keeps them).

    A hybrid search asks the index for the ``search.candidates`` best chunks by meaning and by words and
    fuses the two lists as ``search`` says (:func:`fuse`; default :class:`SearchSettings`)."""
    _check_query(query)
    if mode != "bm25" and embedder.model_id != record.embedding_model:
        raise OdsError(
            f"knowledge base {record.name!r} was indexed with {record.embedding_model!r} but "
            f"ODS_EMBEDDING__MODEL is {embedder.model_id!r}; search with the same model or re-ingest"
        )
    options = search or SearchSettings()
    how = describe_search(mode, "" if mode == "dense" else index.analyzer, options)
    if mode == "bm25":
        return Retrieval(index.search(text=query, mode="bm25", k=k, conditions=conditions), None, how)
    vector = embedder.embed([query])[0]
    if mode == "dense":
        hits = index.search(vector=vector, mode="dense", k=k, conditions=conditions)
        return Retrieval(hits, hits[0].score if hits else None, how)
    # Both sides rank ids and scores only; the fields of the k kept are read once, after fusion (reading
    # them for every candidate cost ~25 ms at 100k chunks: benchmarks/retrieval.py).
    depth = max(k, options.candidates)
    dense = index.rank(vector=vector, mode="dense", k=depth, conditions=conditions)
    words = index.rank(text=query, mode="bm25", k=depth, conditions=conditions)
    cosines: dict[str, float] = {}
    if options.fusion == "convex" and options.exact_dense:
        seen = {chunk_id for chunk_id, _ in dense}
        cosines = index.dense_scores(vector, [chunk_id for chunk_id, _ in words if chunk_id not in seen])
    fused = fuse_ranked(dense, words, options, k, cosines)
    return Retrieval(index.hits(fused), dense[0][1] if dense else None, how)


def fuse(
    dense: list[SearchHit],
    words: list[SearchHit],
    search: SearchSettings,
    k: int,
    cosines: Mapping[str, float] | None = None,
) -> list[SearchHit]:
    """The ``k`` best of a dense and a BM25 list of hits fused as ``search`` says (:func:`fuse_ranked`);
    each hit's score is its fused score."""
    fused = fuse_ranked(
        [(hit.id, hit.score) for hit in dense], [(hit.id, hit.score) for hit in words], search, k, cosines
    )
    by_id = {hit.id: hit for hit in (*words, *dense)}
    return [replace(by_id[chunk_id], score=score) for chunk_id, score in fused]


def fuse_ranked(
    dense: Sequence[tuple[str, float]],
    words: Sequence[tuple[str, float]],
    search: SearchSettings,
    k: int,
    cosines: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """The ``k`` best ``(id, fused score)`` of a dense and a BM25 list of ``(id, score)``, best first, fused
    as ``search`` says (RRF: a sum of ``weight / (rrf_k + rank)``; convex: a weighted sum of normalised
    scores). ``cosines``: exact dense similarities of BM25 ids the dense list lacks, for convex fusion."""
    weights = (2 * search.dense_weight, 2 * (1 - search.dense_weight))  # 0.5 each: plain RRF's scores
    if search.fusion == "rrf":
        return reciprocal_rank_fusion(
            [[chunk_id for chunk_id, _ in dense], [chunk_id for chunk_id, _ in words]],
            k=search.rrf_k,
            weights=weights,
            limit=k,
        )
    return convex_combination(
        [[*dense, *(cosines or {}).items()], list(words)],
        weights=weights,
        normalisation=search.normalisation,
        limit=k,
    )


def describe_search(mode: SearchMode, analyzer: str, search: SearchSettings) -> str:
    """One line naming how a search ranks, e.g. ``hybrid: BM25 (english analyzer) and dense, RRF (k 60)
    of 100 candidates each``."""
    words = f"BM25 ({analyzer} analyzer)"
    if mode == "dense":
        return "dense: cosine similarity of the embeddings"
    if mode == "bm25":
        return f"bm25: {words}"
    return f"hybrid: {words} and dense, {describe_fusion(search)}"


def describe_fusion(search: SearchSettings) -> str:
    """How hybrid search fuses its two lists, e.g. ``RRF (k 60) of 100 candidates each``."""
    if search.fusion == "rrf":
        fusion = f"RRF (k {search.rrf_k}"
    else:
        fusion = f"convex combination ({search.normalisation} scores"
    if search.fusion == "convex" and search.exact_dense:
        fusion += ", exact dense cosines"
    if search.dense_weight != 0.5:
        fusion += f", dense weight {search.dense_weight:g}"
    return f"{fusion}) of {search.candidates} candidates each"


def _check_query(query: str) -> None:
    if not query.strip():
        raise OdsError("the query is empty; ask something, e.g. ods kb search 'returns policy' --kb docs")


MAX_HEADING_FILTERS = 50
MAX_PAGE_FILTERS = 200


def search_conditions(
    settings: Settings,
    kb: str,
    *,
    documents: Sequence[str] | None = None,
    headings: Sequence[str] | None = None,
    pages: Sequence[int] | None = None,
) -> dict[str, FilterValue] | None:
    """The index ``conditions`` for a search of ``kb`` limited to some documents (URIs or file names,
    see :func:`resolve_documents`), headings (exact) and PDF pages (from 1): each list means "any of",
    the lists together "all of". ``None`` when nothing is limited; a value out of bounds is an OdsError."""
    conditions: dict[str, FilterValue] = {}
    if headings:
        if len(headings) > MAX_HEADING_FILTERS:
            raise OdsError(f"{len(headings)} headings to search in; at most {MAX_HEADING_FILTERS}")
        for heading in headings:
            if len(heading.encode("utf-8")) > MAX_HEADING_BYTES:
                raise OdsError(
                    f"heading {heading[:40]!r}... is longer than {MAX_HEADING_BYTES:,} bytes; no chunk has one"
                )
        conditions["heading"] = list(dict.fromkeys(headings))
    if pages:
        if len(pages) > MAX_PAGE_FILTERS:
            raise OdsError(f"{len(pages)} pages to search in; at most {MAX_PAGE_FILTERS}")
        for page in pages:
            if page < 1:
                raise OdsError(f"page {page} is not a page number; pages count from 1")
        conditions["page"] = list(dict.fromkeys(pages))
    if documents:
        conditions["doc_uri"] = resolve_documents(settings, kb, documents)
    return conditions or None


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
