"""ingest_documents end to end: real parsers, the packaged embedding model, Milvus Lite, the catalog."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from flows.ingest_documents import ingest_documents
from ods.adapters.milvus.dense_snapshot import snapshot_path
from ods.adapters.milvus.sparse_snapshot import sparse_path
from ods.factories import build_embedder, open_catalog, open_index
from ods.settings import get_settings
from ods.stages.ingest import bm25_search_source, dense_search_source
from tests.support.cli import run_ods
from tests.support.s3_server import S3Server


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

    # Two documents per batch: three batches go through the parse / embed / index pipeline at once.
    first = ingest_documents(str(folder), "policies", batch_size=2)

    assert (first.indexed, first.quarantined) == (3, 2)
    assert first.chunks == sum(_index_counts("policies").values())
    reasons = {item["uri"].rsplit("/", 1)[-1]: item["reason"] for item in first.quarantined_documents}
    assert reasons == {"empty.txt": "empty", "image.bin": "unsupported"}
    counts = _index_counts("policies")
    assert counts["returns.md"] >= 1 and counts["empty.txt"] == 0

    unchanged = ingest_documents(str(folder), "policies")
    assert (unchanged.indexed, unchanged.quarantined, unchanged.unchanged) == (0, 0, 5)

    (folder / "returns.md").write_text("# Returns policy\n\nReturns are accepted within 14 days only.\n")
    (folder / "shipping.txt").unlink()
    synced = ingest_documents(str(folder), "policies", batch_size=1)

    assert (synced.indexed, synced.deleted) == (1, 1)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        returns_uri = (folder / "returns.md").resolve().as_uri()
        hits = index.search(text="returns days", mode="bm25", k=5, conditions={"doc_uri": returns_uri})
        # The run ended with a dense snapshot of what it left: dense search is exact and in-process.
        source = index.dense_search_source()
        [query] = build_embedder(settings.embedding).embed(["how long do I have to return a product?"])
        dense = index.search(vector=query, mode="dense", k=3)
        index.close()
        statuses = {
            document.uri.rsplit("/", 1)[-1]: document.status for document in catalog.documents("policies")
        }
    assert hits and all("14 days" in hit.text for hit in hits)
    assert source == "snapshot"
    assert "14 days" in dense[0].text and all("Leeds" not in hit.text for hit in dense)
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
    assert result.indexed + result.quarantined == len(files)


def test_a_run_killed_between_upsert_and_delete_converges(tmp_path: Path) -> None:
    """New chunks written, old ones not yet deleted, catalog not updated: the next run finishes the job."""
    from ods.adapters.milvus.schema import ChunkRow
    from ods.domain.chunking import chunk_id, chunk_sections
    from ods.domain.documents import Section
    from ods.domain.hashing import sha256_bytes
    from ods.factories import build_embedder
    from ods.stages.ingest import bounded_token_counts

    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingest_documents(str(folder), "policies")
    path = folder / "returns.md"
    old_sha = sha256_bytes(path.read_bytes())
    path.write_text("# Returns policy\n\nReturns are accepted within 14 days only.\n")
    uri, new_sha = path.resolve().as_uri(), sha256_bytes(path.read_bytes())
    settings = get_settings()
    embedder = build_embedder(settings.embedding)
    chunks = chunk_sections(
        [Section(path.read_text(), None, "Returns policy")],
        count_tokens=lambda texts: bounded_token_counts(embedder, texts),
    )
    vectors = embedder.embed([chunk.text for chunk in chunks])
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        index.upsert(
            [
                ChunkRow(
                    chunk_id("policies", uri, new_sha, c.index), "policies", uri, new_sha, c.index, c.text, v
                )
                for c, v in zip(chunks, vectors, strict=True)
            ]
        )  # ... and the run dies here
        both_versions = index.count({"doc_uri": uri})
        index.close()

    result = ingest_documents(str(folder), "policies")

    assert both_versions > len(chunks)  # the document never disappeared from search
    assert result.indexed == 1
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        remaining = index.count({"doc_uri": uri})
        stale = index.count({"doc_uri": uri, "doc_sha256": old_sha})
        index.close()
        current = next(document for document in catalog.documents("policies") if document.uri == uri)
    assert remaining == len(chunks) and stale == 0
    assert current.sha256 == new_sha and current.status == "indexed"


@pytest.mark.s3
def test_ingest_from_a_bucket_prefix_follows_deletions(
    s3_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ods.factories import build_object_store

    server = s3_server
    monkeypatch.setenv("ODS_OBJECT_STORE__KIND", "minio")
    monkeypatch.setenv("ODS_OBJECT_STORE__ENDPOINT", server.endpoint)  # type: ignore[attr-defined]
    monkeypatch.setenv("ODS_OBJECT_STORE__ACCESS_KEY", server.access_key)  # type: ignore[attr-defined]
    monkeypatch.setenv("ODS_OBJECT_STORE__SECRET_KEY", server.secret_key)  # type: ignore[attr-defined]
    monkeypatch.setenv("ODS_OBJECT_STORE__BUCKET", "ods-ingest-test")
    get_settings.cache_clear()
    store = build_object_store(get_settings())
    store.ensure_ready()
    store.put_bytes("documents/returns.md", b"# Returns\n\nReturn any product within 30 days.\n")
    store.put_bytes("documents/shipping.txt", b"Orders ship from Leeds within two days.\n")

    first = ingest_documents("s3://ods-ingest-test/documents/", "bucket_kb")
    store.delete("documents/shipping.txt")
    second = ingest_documents("s3://ods-ingest-test/documents/", "bucket_kb")

    assert first.indexed == 2
    assert (second.indexed, second.unchanged, second.deleted) == (0, 1, 1)
    counts = _index_counts("bucket_kb")
    assert counts["returns.md"] >= 1 and counts["shipping.txt"] == 0


def test_without_dense_snapshots_search_stays_on_milvus_lite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODS_MILVUS__DENSE_SNAPSHOT", "false")
    get_settings.cache_clear()
    folder = tmp_path / "docs"
    _write_corpus(folder)

    ingest_documents(str(folder), "policies")

    settings = get_settings()
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        [query] = build_embedder(settings.embedding).embed(["where do orders ship from?"])
        hits = index.search(vector=query, mode="dense", k=1)
        source = index.dense_search_source()
        index.close()
        status = dense_search_source(settings, catalog.get_knowledge_base("policies"))
    assert source == "milvus" and "Leeds" in hits[0].text
    assert not list(settings.home.glob("*.ods-dense"))
    assert status.startswith("Milvus Lite (HNSW; dense snapshot off")  # its own index serves dense search


def test_an_unchanged_run_writes_a_missing_dense_snapshot_and_leaves_a_current_one(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingest_documents(str(folder), "policies")
    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base("policies")
    snapshot = snapshot_path(settings.milvus_uri, record.collection_name)
    written = snapshot.stat().st_mtime_ns
    assert dense_search_source(settings, record).startswith("exact, from the dense snapshot")

    unchanged = ingest_documents(str(folder), "policies")
    assert unchanged.indexed == 0 and snapshot.stat().st_mtime_ns == written  # current: left alone

    snapshot.unlink()  # as good as stale: dense search went back to Milvus Lite
    # The fallback searches Milvus Lite's FLAT index (exact): with snapshots on, it builds no HNSW.
    assert dense_search_source(settings, record).startswith("Milvus Lite (FLAT; no current dense snapshot")
    healed = ingest_documents(str(folder), "policies")

    assert (healed.indexed, healed.unchanged) == (0, 5)
    assert snapshot.exists() and dense_search_source(settings, record).startswith("exact")

    # The BM25 sparse snapshot beside it: written by the ingest, and by an unchanged run when missing.
    assert bm25_search_source(settings, record).startswith("exact, from the sparse snapshot (english")
    sparse_path(snapshot).unlink()
    assert bm25_search_source(settings, record).startswith("Milvus Lite (standard analyzer; no current")
    ingest_documents(str(folder), "policies")
    assert bm25_search_source(settings, record).startswith("exact, from the sparse snapshot")


def test_documents_over_the_limits_are_quarantined_naming_the_limit_and_the_rest_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODS_INGEST__MAX_DOCUMENT_BYTES", "200000")
    monkeypatch.setenv("ODS_INGEST__MAX_DOCUMENT_CHARS", "100000")
    monkeypatch.setenv("ODS_INGEST__MAX_DOCUMENT_CHUNKS", "20")
    get_settings.cache_clear()
    folder = tmp_path / "docs"
    _write_corpus(folder)
    (folder / "huge.txt").write_bytes(b"word " * 60_000)  # 300,000 bytes: never read
    (folder / "long.txt").write_bytes(b"word " * 30_000)  # one line of 149,999 characters
    (folder / "wordy.txt").write_bytes(b"word " * 12_000)  # 48,000 letters: at least 40 chunks
    (folder / "parts.md").write_text("".join(f"# Part {n}\n\nShort text {n}.\n\n" for n in range(30)))

    first = ingest_documents(str(folder), "policies")

    assert (first.indexed, first.quarantined) == (3, 6)
    details = {item["uri"].rsplit("/", 1)[-1]: item["detail"] for item in first.quarantined_documents}
    advice = "raise the limit or split the document"
    assert details["huge.txt"] == f"300,000 bytes, over ODS_INGEST__MAX_DOCUMENT_BYTES=200,000; {advice}"
    assert details["long.txt"] == (
        f"extracted 149,999 characters, over ODS_INGEST__MAX_DOCUMENT_CHARS=100,000; {advice}"
    )
    assert details["wordy.txt"] == (
        "would make at least 40 chunks (at most 1,200 characters each), "
        f"over ODS_INGEST__MAX_DOCUMENT_CHUNKS=20; {advice}"
    )
    assert details["parts.md"] == f"makes 30 chunks, over ODS_INGEST__MAX_DOCUMENT_CHUNKS=20; {advice}"
    counts = _index_counts("policies")
    assert all(counts[name] == 0 for name in ("huge.txt", "long.txt", "wordy.txt", "parts.md"))
    assert counts["returns.md"] >= 1

    again = ingest_documents(str(folder), "policies")
    assert (again.indexed, again.quarantined, again.unchanged) == (0, 0, 9)  # no flapping

    # A raised limit reads the document again, unchanged as it is: long.txt now meets the chunk limit.
    monkeypatch.setenv("ODS_INGEST__MAX_DOCUMENT_CHARS", "200000")
    get_settings.cache_clear()
    raised = ingest_documents(str(folder), "policies")

    assert (raised.quarantined, raised.unchanged) == (1, 8)
    [item] = raised.quarantined_documents
    assert item["uri"].endswith("/long.txt") and "over ODS_INGEST__MAX_DOCUMENT_CHUNKS=20" in item["detail"]
    with open_catalog(get_settings()) as catalog:
        reasons = {d.uri.rsplit("/", 1)[-1]: d.reason for d in catalog.documents("policies", "quarantined")}
    assert "huge.txt: 300,000 bytes, over ODS_INGEST__MAX_DOCUMENT_BYTES=200,000" in (
        reasons["huge.txt"] or ""
    )
    assert "ODS_INGEST__MAX_DOCUMENT_CHUNKS" in (reasons["long.txt"] or "")


def test_files_with_unusable_names_are_quarantined_and_the_rest_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    for name in (b"ctrl\x01char.txt", b"new\nline.txt", b"esc\x1b[31mred.txt", b"bad\xffutf8.txt"):
        Path(os.fsdecode(os.fsencode(folder) + b"/" + name)).write_bytes(b"Text under a bad name.\n")

    first = ingest_documents(str(folder), "policies")
    again = ingest_documents(str(folder), "policies")

    assert (first.indexed, first.quarantined) == (3, 6)
    bad = {item["uri"].rsplit("/", 1)[-1]: item for item in first.quarantined_documents}
    assert {name for name, item in bad.items() if item["reason"] == "bad_name"} == {
        "ctrl%01char.txt", "new%0Aline.txt", "esc%1B%5B31mred.txt", "bad%FFutf8.txt",
    }  # fmt: skip
    assert bad["bad%FFutf8.txt"]["detail"] == (
        'file name "bad\\xffutf8.txt" is not valid UTF-8: byte \\xff at character 4; rename the file'
    )
    assert (again.indexed, again.quarantined, again.unchanged) == (0, 0, 9)
    assert _index_counts("policies")["returns.md"] >= 1


@pytest.mark.s3
def test_objects_with_unusable_names_are_quarantined_the_rest_indexed_and_listed_escaped(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minio import Minio

    from ods.factories import build_object_store

    for name, value in {
        "KIND": "minio",
        "ENDPOINT": s3_server.endpoint,
        "ACCESS_KEY": s3_server.access_key,
        "SECRET_KEY": s3_server.secret_key,
        "BUCKET": "ods-bad-names-test",
    }.items():
        monkeypatch.setenv(f"ODS_OBJECT_STORE__{name}", value)
    get_settings.cache_clear()
    store = build_object_store(get_settings())
    store.ensure_ready()
    store.put_bytes("docs/returns.md", b"# Returns\n\nReturn any product within 30 days.\n")
    store.put_bytes("docs/shipping.txt", b"Orders ship from Leeds within two days.\n")
    client = Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, secure=False)
    for key in ("docs/ctrl\x01char.txt", "docs/new\nline\x1b[2J.txt"):  # the store itself refuses them
        client.put_object("ods-bad-names-test", key, io.BytesIO(b"Text under a bad name.\n"), 23)

    first = ingest_documents("s3://ods-bad-names-test/docs/", "bucket_kb")
    again = ingest_documents("s3://ods-bad-names-test/docs/", "bucket_kb")
    listed = run_ods("kb", "documents", "bucket_kb", "--status", "quarantined", env={"COLUMNS": "400"})
    client.remove_object("ods-bad-names-test", "docs/ctrl\x01char.txt")
    removed = ingest_documents("s3://ods-bad-names-test/docs/", "bucket_kb")

    assert (first.indexed, first.quarantined) == (2, 2)
    details = {item["uri"]: item["detail"] for item in first.quarantined_documents}
    assert details["s3://ods-bad-names-test/docs/ctrl\\x01char.txt"] == (
        'object name "docs/ctrl\\x01char.txt" has control character \\x01 (U+0001) at character 10; '
        "rename the object"
    )
    assert "s3://ods-bad-names-test/docs/new\\nline\\x1b[2J.txt" in details
    assert (again.indexed, again.quarantined, again.unchanged) == (0, 0, 4)
    assert listed.returncode == 0, listed.stderr
    assert "docs/ctrl\\x01char.txt" in listed.stdout and "docs/new\\nline\\x1b[2J.txt" in listed.stdout
    assert not any(character in listed.stdout for character in "\x01\x1b"), listed.stdout
    assert (removed.deleted, removed.unchanged) == (1, 3)
    with open_catalog(get_settings()) as catalog:
        statuses = {document.uri: document.status for document in catalog.documents("bucket_kb")}
    assert statuses["s3://ods-bad-names-test/docs/ctrl\\x01char.txt"] == "deleted"
    assert _index_counts("bucket_kb")["returns.md"] >= 1


def _catalog_and_index(kb: str) -> tuple[dict[str, int], int, int]:
    """The catalog's versions by status and indexed chunk rows, and the index's row count for ``kb``."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        counts = catalog.knowledge_base_counts(kb)
        index = open_index(settings, catalog.get_knowledge_base(kb))
        try:
            return counts.versions, counts.indexed_chunks, index.count()
        finally:
            index.close()


def test_after_documents_change_the_catalog_counts_what_the_index_holds(tmp_path: Path) -> None:
    """Issue 19: one changed document left the catalog at 121 versions and 1,277 chunk rows against 120
    documents and 1,266 chunks in Milvus. Now the replaced version is superseded, also when the new
    version is quarantined (its old chunks used to stay searchable)."""
    from ods.stages.ingest import verify_knowledge_base

    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingest_documents(str(folder), "policies")
    (folder / "returns.md").write_text("# Returns policy\n\nReturns are accepted within 14 days only.\n")
    (folder / "shipping.txt").write_text("\n")  # its new version has no text: quarantined

    synced = ingest_documents(str(folder), "policies")

    versions, catalog_chunks, index_chunks = _catalog_and_index("policies")
    assert (synced.indexed, synced.quarantined) == (1, 1)
    assert versions == {"indexed": 2, "quarantined": 3, "superseded": 2}
    assert catalog_chunks == index_chunks == sum(_index_counts("policies").values())
    assert _index_counts("policies")["shipping.txt"] == 0
    verification = verify_knowledge_base(get_settings(), "policies")
    assert verification.drift.ok and verification.lines() == [
        f"knowledge base 'policies': the catalog and the index agree ({catalog_chunks} chunks)"
    ]


def test_verify_reports_drift_behind_the_catalogs_back_and_repair_then_ingest_converge(
    tmp_path: Path,
) -> None:
    from ods.adapters.milvus.schema import ChunkRow
    from ods.stages.health import run_check
    from ods.stages.ingest import verify_knowledge_base

    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingest_documents(str(folder), "policies")
    settings = get_settings()
    returns = (folder / "returns.md").resolve().as_uri()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base("policies")
        index = open_index(settings, record)
        try:  # another Milvus client deletes a document's chunks and writes one the catalog never saw
            lost = index.count({"doc_uri": returns})
            index.delete_document(returns)
            [vector] = build_embedder(settings.embedding).embed(["stray"])
            index.upsert(
                [ChunkRow("stray-chunk", "policies", "file:///elsewhere/stray.md", "0" * 64, 0, "x", vector)]
            )
        finally:
            index.close()

    found = verify_knowledge_base(settings, "policies")
    doctor = run_check("knowledge_bases", settings, deep=True)

    assert not found.drift.ok
    assert (len(found.drift.missing), found.drift.documents_missing_chunks) == (lost, [returns])
    assert found.drift.orphans == {"stray-chunk": "file:///elsewhere/stray.md"}
    lines = found.lines()
    assert (
        lines[1] == f"{lost} chunk(s) in the catalog are missing from the index, of 1 document(s): {returns}"
    )
    assert lines[2].startswith("1 chunk(s) in the index are not in the catalog (orphans)")
    assert lines[-1].startswith("to repair: ods kb verify policies --repair")
    assert f"ods kb ingest {folder} --kb policies" in lines[-1]
    assert not doctor.ok and "policies: " in doctor.detail and "1 orphan(s)" in doctor.detail

    repaired = verify_knowledge_base(settings, "policies", repair=True)
    assert (repaired.orphans_deleted, repaired.documents_reset) == (1, (returns,))
    assert verify_knowledge_base(settings, "policies").drift.ok  # the catalog no longer counts it indexed
    healed = ingest_documents(str(folder), "policies")

    assert (healed.indexed, healed.unchanged) == (1, 4)
    assert verify_knowledge_base(settings, "policies").drift.ok
    _, catalog_chunks, index_chunks = _catalog_and_index("policies")
    assert catalog_chunks == index_chunks and _index_counts("policies")["returns.md"] == lost
    assert run_check("knowledge_bases", settings, deep=True).ok
