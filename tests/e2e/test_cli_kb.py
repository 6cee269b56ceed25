"""`ods kb ...` as a user runs it: ingest through the flow, then status, documents and search at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert

from ods.adapters.catalog import Catalog
from ods.adapters.catalog.schema import KnowledgeBase
from ods.settings import get_settings
from ods.stages.health import run_check
from ods.stages.sample_data import write_policy_documents
from tests.support.cli import run_ods
from tests.unit.test_document_parsers import pdf_bytes

RULE = "use 1-63 lower-case letters, digits, '_' or '-', starting with a letter"


def test_ingest_status_documents_search_and_verify(tmp_path: Path) -> None:
    from ods.adapters.milvus.lite_server import stop_lite_servers
    from ods.factories import open_catalog, open_index

    folder = write_policy_documents(tmp_path / "docs")
    (folder / "notes.doc").write_bytes(b"\xd0\xcf\x11\xe0legacy word file")
    (folder / "layout.pdf").write_bytes(
        pdf_bytes(
            "Layout detection finds text blocks, titles and figures on a scanned page.",
            "Table recognition turns the cells of a detected table into rows and columns.",
        )
    )

    ingested = run_ods("kb", "ingest", str(folder), "--kb", "policies", cwd=tmp_path)
    status = run_ods("kb", "status", "policies", cwd=tmp_path)
    quarantined = run_ods("kb", "documents", "policies", "--status", "quarantined", cwd=tmp_path)
    search = run_ods(
        "kb", "search", "how many days to return an item", "--kb", "policies", "-k", "2", cwd=tmp_path
    )
    bm25 = run_ods("kb", "search", "Leeds warehouse", "--kb", "policies", "--mode", "bm25", cwd=tmp_path)
    only_warranty = run_ods(
        "kb", "search", "how many days to return an item", "--kb", "policies", "--document", "warranty.html",
        "--mode", "dense", cwd=tmp_path,
    )  # fmt: skip
    only_exceptions = run_ods(
        "kb", "search", "returned", "--kb", "policies", "--heading", "Exceptions", "--heading", "Nowhere",
        "--mode", "dense", cwd=tmp_path,
    )  # fmt: skip
    on_page_two = run_ods(
        "kb", "search", "layout detection", "--kb", "policies", "--page", "2", "--mode", "dense", cwd=tmp_path
    )  # fmt: skip
    agreed = run_ods("kb", "verify", "policies", cwd=tmp_path)
    settings = get_settings()
    shipping = (folder / "shipping.md").resolve().as_uri()
    with open_catalog(settings) as catalog:
        chunks = catalog.knowledge_base_counts("policies").indexed_chunks
        index = open_index(settings, catalog.get_knowledge_base("policies"))
        try:
            index.delete_document(shipping)  # behind the catalog's back
        finally:
            index.close()
            stop_lite_servers()  # the Milvus Lite file is free for the command again
    drifted = run_ods("kb", "verify", "policies", cwd=tmp_path)

    assert ingested.returncode == 0, ingested.stderr[-2000:]
    assert "5 indexed" in ingested.stdout and "1 quarantined" in ingested.stdout, ingested.stdout
    assert "Traceback" not in ingested.stderr
    assert status.returncode == 0 and "5 indexed, 1 quarantined" in status.stdout, status.stdout
    assert f"│ chunks          │ {chunks} " in status.stdout, status.stdout  # the catalog's count ...
    assert f"from the dense snapshot ({chunks} chunks)" in status.stdout  # ... and the index's
    assert "exact, from the dense snapshot" in status.stdout, status.stdout
    assert f"exact, from the sparse snapshot (english analyzer, {chunks} chunks)" in status.stdout
    assert "│ hybrid fusion   │ convex combination (zscore scores) of 400" in status.stdout, status.stdout
    assert quarantined.returncode == 0 and "notes.doc" in quarantined.stdout
    assert search.returncode == 0, search.stderr
    first_answer = next(line for line in search.stdout.splitlines() if line.startswith("│ 1 "))
    assert "returns-policy.md" in first_answer, search.stdout
    assert "hybrid: BM25 (english analyzer) and dense, convex combination" in search.stdout, search.stdout
    assert bm25.returncode == 0
    first_hit = next(line for line in bm25.stdout.splitlines() if line.startswith("│ 1 "))
    assert "shipping.md" in first_hit, bm25.stdout
    assert only_warranty.returncode == 0, only_warranty.stderr
    ranked = [line for line in only_warranty.stdout.splitlines() if line.startswith("│ ") and "│ 0." in line]
    assert ranked and all("warranty.html" in line for line in ranked), only_warranty.stdout
    assert only_exceptions.returncode == 0, only_exceptions.stderr
    assert ranked_cells(only_exceptions.stdout, 5) == {"Exceptions"}, only_exceptions.stdout
    assert on_page_two.returncode == 0, on_page_two.stderr
    assert ranked_cells(on_page_two.stdout, 3, 4) == {"layout.pdf 2"}, on_page_two.stdout
    assert agreed.returncode == 0, agreed.stderr
    assert f"the catalog and the index agree ({chunks} chunks)" in agreed.stdout
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "has drifted from its index" in drifted.stdout and shipping in drifted.stdout
    assert "ods kb verify policies --repair" in drifted.stdout


def ranked_cells(table: str, *columns: int) -> set[str]:
    """The distinct values of ``columns`` (1: rank, 3: document, 4: page, 5: heading) over the first line
    of each hit of an ``ods kb search`` table."""
    rows = [line.split("│") for line in table.splitlines() if line.startswith("│ ") and "│ 0." in line]
    return {" ".join(row[column].strip() for column in columns) for row in rows}


def test_kb_errors_are_one_line(tmp_path: Path) -> None:
    unknown = run_ods("kb", "search", "anything", "--kb", "nope", cwd=tmp_path)
    bad_mode = run_ods("kb", "search", "x", "--kb", "nope", "--mode", "fuzzy", cwd=tmp_path)
    missing_folder = run_ods("kb", "ingest", str(tmp_path / "missing"), "--kb", "x", cwd=tmp_path)

    for completed in (unknown, bad_mode, missing_folder):
        assert completed.returncode == 2
        assert len(completed.stderr.strip().splitlines()[-1:]) == 1
        assert completed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no knowledge base named 'nope'" in unknown.stderr
    assert "--mode 'fuzzy'" in bad_mode.stderr
    assert "not a directory" in missing_folder.stderr


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../x", "'../../x'"),
        ("kb with space", "'kb with space'"),
        ("kb\nnext", "'kb\\nnext'"),
        ("kb\x1b[31mred", "'kb\\x1b[31mred'"),
    ],
)
def test_a_bad_knowledge_base_name_is_one_line_with_the_rule_and_nothing_is_written(
    tmp_path: Path, ods_home: Path, name: str, shown: str
) -> None:
    folder = write_policy_documents(tmp_path / "docs")

    completed = run_ods("kb", "ingest", str(folder), "--kb", name, cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        f"error: knowledge base name {shown} is not allowed: {RULE} (e.g. policies)"
    ]
    assert "\x1b" not in completed.stdout + completed.stderr
    assert not ods_home.exists(), "no catalog, vector index or object was created"


def test_an_empty_knowledge_base_name_says_so(tmp_path: Path, ods_home: Path) -> None:
    completed = run_ods("kb", "ingest", str(tmp_path), "--kb", "", cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [f"error: knowledge base name is empty: {RULE} (e.g. policies)"]
    assert not ods_home.exists()


def test_a_stored_bad_name_is_a_doctor_warning_printed_escaped_and_never_written_to(tmp_path: Path) -> None:
    legacy = "evil\x1b[2J\nkb"  # written before the naming rule, when any non-blank name was accepted
    with Catalog.open(get_settings().catalog_url) as catalog:
        catalog.migrate()
        with catalog.engine.begin() as connection:
            connection.execute(
                insert(KnowledgeBase).values(
                    name=legacy,
                    embedding_model="all-MiniLM-L6-v2",
                    embedding_dim=384,
                    collection_name="kb_evil",
                )
            )

    doctor = run_check("catalog", get_settings())  # what `ods doctor` shows on the catalog's row
    status = run_ods("kb", "status", legacy, cwd=tmp_path)
    reingest = run_ods("kb", "ingest", str(tmp_path), "--kb", legacy, cwd=tmp_path)

    assert (doctor.ok, doctor.status) == (True, "WARN"), doctor
    assert "1 name(s) break the naming rule" in doctor.detail and "\x1b" not in doctor.detail
    assert "knowledge base 'evil\\x1b[2J\\nkb': ingest its source again" in doctor.detail
    assert status.returncode == 0, status.stderr
    assert "knowledge base 'evil\\x1b[2J\\nkb'" in status.stdout
    for completed in (status, reingest):
        assert "\x1b" not in completed.stdout + completed.stderr
    assert reingest.returncode == 2
    assert reingest.stderr.splitlines() == [
        f"error: knowledge base name 'evil\\x1b[2J\\nkb' is not allowed: {RULE} (e.g. policies)"
    ]
