"""The passages of an answer: retrieved from the knowledge base, turned into sources, and the sentences
closest to the question picked as evidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ods.adapters.catalog import Catalog
from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.milvus.index import VectorIndex
from ods.adapters.milvus.schema import FilterValue
from ods.adapters.models.embedder import Embedder
from ods.domain.answering import Evidence, Source, pick_evidence, split_sentences, without_instructions
from ods.domain.copied_fields import copy_fields
from ods.factories import build_embedder
from ods.settings import Settings
from ods.stages.answer.results import AnswerSource, Gathered
from ods.stages.retrieve import resolve_documents, retrieve_passages, search_index

EXCERPT_CHARS = 300


class KeptAdapters(Protocol):
    """The catalog, the embedder and the indexes a long-lived process keeps open (the API server's
    ``Resources``), lent to an answer so it opens none of them itself."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def embedder(self) -> Embedder: ...

    def index(self, record: KnowledgeBaseRecord) -> VectorIndex: ...


def gather_passages(
    gathered: Gathered,
    settings: Settings,
    kb: str,
    query: str,
    documents: Sequence[str],
    adapters: KeptAdapters | None = None,
) -> None:
    conditions = {"doc_uri": resolve_documents(settings, kb, documents)} if documents else None
    passages, note = retrieve_sources(settings, kb, query, len(gathered.sources), conditions, adapters)
    if note:
        gathered.notes.append(note)
    gathered.passages = passages
    gathered.sources += [_document_source(passage) for passage in passages]
    for passage in passages:
        addressed = without_instructions(passage.text)[1]
        if addressed:
            quoted = addressed[0] if len(addressed[0]) <= 80 else addressed[0][:79] + "…"
            gathered.notes.append(
                f"source [{passage.marker}] ({passage.label}) holds text addressed to an AI assistant "
                f"(“{quoted}”): withheld from the model and never used as evidence"
            )


def passage_evidence(
    settings: Settings, question: str, passages: Sequence[Source], embedder: Embedder | None = None
) -> list[Evidence]:
    """The sentences of the passages closest in meaning to the question (the embedder is already loaded)."""
    candidates = [  # text addressed to the model is never quoted as evidence
        (passage.marker, sentence)
        for passage in passages
        for sentence in split_sentences(without_instructions(passage.text)[0])
    ]
    if not candidates:
        return []
    vectors = (embedder or build_embedder(settings.embedding)).embed(
        [question, *(sentence for _, sentence in candidates)]
    )
    scores = (vectors[1:] @ vectors[0]).tolist()
    return pick_evidence(candidates, scores, limit=2, min_score=settings.answer.min_relevance)


def retrieve_sources(
    settings: Settings,
    kb: str,
    query: str,
    first_marker: int,
    conditions: Mapping[str, FilterValue] | None = None,
    adapters: KeptAdapters | None = None,
) -> tuple[list[Source], str | None]:
    """The passages of ``kb`` for ``query``, numbered from ``first_marker + 1``, or a note saying why none;
    on ``adapters``' open index and embedder when given, else on ones opened for this call."""
    answer_settings = settings.answer
    if adapters is None:
        retrieval = retrieve_passages(
            settings, kb, query, k=answer_settings.top_k, mode="hybrid", conditions=conditions
        )
    else:
        record = adapters.catalog.get_knowledge_base(kb)
        retrieval = search_index(
            adapters.index(record),
            adapters.embedder,
            record,
            query,
            k=answer_settings.top_k,
            mode="hybrid",
            conditions=conditions,
            search=settings.search,
        )
    if not retrieval.hits:
        return [], f"knowledge base {kb!r} has no passages"
    if retrieval.best_similarity is not None and retrieval.best_similarity < answer_settings.min_relevance:
        return [], (
            f"the closest passage in {kb!r} scores {retrieval.best_similarity:.2f}, under the relevance "
            f"cut {answer_settings.min_relevance} (ODS_ANSWER__MIN_RELEVANCE)"
        )
    return [
        copy_fields(Source, hit, marker=first_marker + offset + 1, chunk_id=hit.id)
        for offset, hit in enumerate(retrieval.hits)
    ], None


def _document_source(passage: Source) -> AnswerSource:
    excerpt = " ".join(passage.text.split())
    return AnswerSource(
        marker=passage.marker,
        kind="document",
        label=passage.label,
        excerpt=excerpt if len(excerpt) <= EXCERPT_CHARS else excerpt[: EXCERPT_CHARS - 1] + "…",
        doc_uri=passage.doc_uri,
        page=passage.page,
        heading=passage.heading,
        chunk_id=passage.chunk_id,
        score=passage.score,
    )
