"""`ods kb ...` as a user runs it: ingest through the flow, then status, documents and search at once."""

from __future__ import annotations

from pathlib import Path

from ods.sample_data import write_policy_documents
from tests.support.cli import run_ods


def test_ingest_status_documents_and_search(tmp_path: Path) -> None:
    folder = write_policy_documents(tmp_path / "docs")
    (folder / "notes.doc").write_bytes(b"\xd0\xcf\x11\xe0legacy word file")

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

    assert ingested.returncode == 0, ingested.stderr[-2000:]
    assert "4 indexed" in ingested.stdout and "1 quarantined" in ingested.stdout, ingested.stdout
    assert "Traceback" not in ingested.stderr
    assert status.returncode == 0 and "4 indexed, 1 quarantined" in status.stdout, status.stdout
    assert "exact, from the dense snapshot" in status.stdout, status.stdout
    assert quarantined.returncode == 0 and "notes.doc" in quarantined.stdout
    assert search.returncode == 0, search.stderr
    first_answer = next(line for line in search.stdout.splitlines() if line.startswith("│ 1 "))
    assert "returns-policy.md" in first_answer, search.stdout
    assert bm25.returncode == 0
    first_hit = next(line for line in bm25.stdout.splitlines() if line.startswith("│ 1 "))
    assert "shipping.md" in first_hit, bm25.stdout
    assert only_warranty.returncode == 0, only_warranty.stderr
    ranked = [line for line in only_warranty.stdout.splitlines() if line.startswith("│ ") and "│ 0." in line]
    assert ranked and all("warranty.html" in line for line in ranked), only_warranty.stdout


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
