"""Retrieval quality on the CISI test collection (1,460 abstracts, 76 judged queries), against references.

The collection is ingested once per module with the ingest stages the flow's tasks run (no Prefect),
the search snapshots written as an ingest run ends, then every judged query is searched in the default
mode with ``search_index``, the function the CLI and the API call, for enough chunks to rank ten documents
(a document's rank is its best chunk's, as in the benchmark). Its nDCG@10 must reach that of the
reciprocal-rank fusion (k 60) of two references computed here from the same texts: exact dense search with
the same embedder and stemmed BM25 (bm25s). ``benchmarks/retrieval_quality.py`` prints the full table.

The cost is the embedding on the CPU: 1,839 chunks, then the 343 reference texts of documents cut into more
than one chunk (a one-chunk document's vector is its chunk's). 3:04 on the shared 2-core machine at a load
of ~3.3, over 5 minutes at a load of 5.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.retrieval_quality import (
    CHUNK_DEPTH,
    Collection,
    Scores,
    doc_id_of,
    read_collection,
    reference_rankings,
    score,
    write_documents,
)
from ods.adapters.workers.parse_pool import DocumentParserPool
from ods.domain.retrieval_metrics import unique_in_order
from ods.factories import build_embedder, open_catalog, open_index, open_source
from ods.settings import load_settings
from ods.stages.ingest import embed_batch, index_batch, open_knowledge_base, plan_ingest, prepare_batch
from ods.stages.retrieve import search_index

# The timeout only guards against a hang: the fixture embeds ~3,300 texts, 2-3 minutes on 2 idle cores and
# past pytest's default 300 s when the cores are shared.
pytestmark = [pytest.mark.corpora, pytest.mark.timeout(1200)]

KB = "cisi"
DEFAULT_MODE = inspect.signature(search_index).parameters["mode"].default


@dataclass(frozen=True)
class Measured:
    default: Scores
    references: dict[str, Scores]


@pytest.fixture(scope="module")
def measured(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Measured:
    """CISI ingested into a fresh ODS home and searched in the default mode; the references beside it."""
    collection: Collection = read_collection(corpora_dir, "cisi")
    root = tmp_path_factory.mktemp("cisi")
    folder = root / "documents"
    write_documents(collection, folder)
    settings = load_settings(home=root / "ods-home")
    source = open_source(settings, str(folder))
    embedder = build_embedder(settings.embedding)
    with open_catalog(settings) as catalog, DocumentParserPool() as pool:
        record = open_knowledge_base(catalog, settings, KB, str(folder))
        index = open_index(settings, record)
        try:
            prepared = prepare_batch(
                catalog=catalog,
                embedder=embedder,
                pool=pool,
                source=source,
                kb=KB,
                documents=plan_ingest(catalog, KB, source).to_read,
            )
            embedded = embed_batch(prepared, embedder)
            # A one-chunk document's chunk is its whole text: the reference need not embed it again.
            known = {row.text: row.vector for row in embedded.rows}
            report = index_batch(catalog=catalog, index=index, kb=KB, prepared=embedded)
            assert report.indexed == len(collection.documents) and not report.quarantined
            index.write_search_snapshot()  # as an ingest run ends: exact dense and BM25 search
            rankings = {
                query_id: unique_in_order(
                    doc_id_of(hit.doc_uri)
                    for hit in search_index(
                        index, embedder, record, question, k=CHUNK_DEPTH, search=settings.search
                    ).hits
                )
                for query_id, question in collection.queries.items()
            }
        finally:
            index.close()
    references = {
        name: score(ranked, collection.relevant)
        for name, ranked in reference_rankings(collection, embedder, known=known).items()
    }
    default = score(rankings, collection.relevant)
    print(f"\nCISI nDCG@10: {DEFAULT_MODE} {default.ndcg10:.3f}, references", references)
    return Measured(default, references)


def test_the_default_search_mode_ranks_above_the_rrf_reference(measured: Measured) -> None:
    assert measured.default.ndcg10 >= measured.references["rrf"].ndcg10, measured
