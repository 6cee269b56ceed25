"""ingest_documents end to end: real parsers, the packaged embedding model, Milvus Lite, the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.ingest_documents import ingest_documents
from ods.ingestion import open_index
from ods.preparation import open_catalog
from ods.settings import get_settings


def _write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "returns.md").write_text(
        "# Returns policy\n\nCustomers may return any product within 30 days for a full refund.\n",
        encoding="utf-8",
    )
    (folder / "shipping.txt").write_text("Orders ship from the Leeds warehouse within two working days.\n")
    (folder / "page.html").write_text(
        "<html><head><script>alert('x')</script></head><body><h1>Warranty</h1>"
        "<p>Every gadget carries a two year warranty.</p></body></html>"
    )
    (folder / "empty.txt").write_text("   \n")
    (folder / "image.bin").write_bytes(b"\x00\x01\x02 not a document")


def _index_counts(kb: str) -> dict[str, int]:
    settings = get_settings()
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base(kb))
        try:
            uris = [document.uri for document in catalog.documents(kb)]
            return {uri.rsplit("/", 1)[-1]: index.count({"doc_uri": uri}) for uri in uris}
        finally:
            index.close()


def test_ingest_then_sync_changes_and_deletions(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)

    first = ingest_documents(str(folder), "policies")

    assert (first["indexed"], first["quarantined"]) == (3, 2)
    reasons = {item["uri"].rsplit("/", 1)[-1]: item["reason"] for item in first["quarantined_documents"]}
    assert reasons == {"empty.txt": "empty", "image.bin": "unsupported"}
    counts = _index_counts("policies")
    assert counts["returns.md"] >= 1 and counts["empty.txt"] == 0

    unchanged = ingest_documents(str(folder), "policies")
    assert (unchanged["indexed"], unchanged["quarantined"], unchanged["unchanged"]) == (0, 0, 5)

    (folder / "returns.md").write_text("# Returns policy\n\nReturns are accepted within 14 days only.\n")
    (folder / "shipping.txt").unlink()
    synced = ingest_documents(str(folder), "policies")

    assert (synced["indexed"], synced["deleted"]) == (1, 1)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        returns_uri = (folder / "returns.md").resolve().as_uri()
        hits = index.search(text="returns days", mode="bm25", k=5, conditions={"doc_uri": returns_uri})
        index.close()
        statuses = {
            document.uri.rsplit("/", 1)[-1]: document.status for document in catalog.documents("policies")
        }
    assert hits and all("14 days" in hit.text for hit in hits)
    assert statuses["shipping.txt"] == "deleted"
    assert _index_counts("policies")["shipping.txt"] == 0


@pytest.mark.corpora
def test_every_shared_document_ends_indexed_or_quarantined(corpora_dir: Path) -> None:
    result = ingest_documents(str(corpora_dir / "docs"), "corpus")

    settings = get_settings()
    with open_catalog(settings) as catalog:
        documents = catalog.documents("corpus")
    files = sorted(path.name for path in (corpora_dir / "docs").iterdir() if not path.name.startswith("."))
    assert sorted(document.uri.rsplit("/", 1)[-1] for document in documents) == files
    for document in documents:
        assert document.status in ("indexed", "quarantined")
        if document.status == "quarantined":
            assert document.reason
    assert result["indexed"] + result["quarantined"] == len(files)
