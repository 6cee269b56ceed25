"""`ods ask` and `ods conversations` as a user runs them, each command its own process.

The catalog is the real PostgreSQL server, so the conversation written by one process is read by the next.
Answers are extractive here (quotes of the evidence), which keeps the model out of these process-level tests;
generation is covered in tests/flows/test_answer_question.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from ods.stages.sample_data import write_policy_documents
from tests.support.cli import run_ods


@pytest.mark.postgres
def test_a_conversation_outlives_the_process_that_wrote_it(tmp_path: Path, postgres_url: str) -> None:
    env = {"ODS_CATALOG__URL": postgres_url, "ODS_ANSWER__STYLE": "extractive"}
    kb = f"handbook_{secrets.token_hex(3)}"
    folder = write_policy_documents(tmp_path / "docs")
    ingested = run_ods("kb", "ingest", str(folder), "--kb", kb, env=env)
    assert ingested.returncode == 0, ingested.stderr[-2000:]

    asked = run_ods("ask", "How long do customers have to return a product?", "--kb", kb, "--json", env=env)
    assert asked.returncode == 0, asked.stderr[-2000:]
    answer = json.loads(asked.stdout)
    assert "within 30 days" in answer["answer"] and "[1]" in answer["answer"]
    assert answer["citations"][0]["doc_uri"].endswith("returns-policy.md")
    conversation = answer["conversation_id"]

    follow_up = run_ods(
        "ask", "Which warehouse ships the orders?", "--kb", kb, "--conversation", conversation, env=env
    )
    assert follow_up.returncode == 0, follow_up.stderr[-2000:]
    assert "Leeds" in follow_up.stdout and "shipping.md" in follow_up.stdout
    searched = " ".join(follow_up.stdout.split())  # the console wraps long lines
    assert "search: hybrid, convex combination" in searched and "english analyzer" in searched, searched

    chatted = subprocess.run(
        [sys.executable, "-m", "ods", "chat", "--kb", kb, "--conversation", conversation],
        input="How long is the warranty on a gadget?\n\n",
        env={**os.environ, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert chatted.returncode == 0, chatted.stderr[-2000:]
    assert "two year warranty" in chatted.stdout and f"--conversation {conversation}" in chatted.stdout

    listed = run_ods("conversations", "list", env=env)
    shown = run_ods("conversations", "show", conversation, env=env)
    assert conversation in listed.stdout
    assert shown.returncode == 0 and "6 messages" in shown.stdout
    assert "returns-policy.md" in shown.stdout and "shipping.md" in shown.stdout

    deleted = run_ods("conversations", "delete", conversation, "--yes", env=env)
    gone = run_ods("conversations", "show", conversation, env=env)
    assert deleted.returncode == 0
    assert gone.returncode == 2 and f"no conversation with id {conversation!r}" in gone.stderr


def test_ask_errors_are_one_line(tmp_path: Path) -> None:
    nothing = run_ods("ask", "What is the returns policy?", cwd=tmp_path)
    unknown_kb = run_ods("ask", "What is the returns policy?", "--kb", "nope", cwd=tmp_path)
    bad_mode = run_ods("ask", "x", "--kb", "nope", "--mode", "guess", cwd=tmp_path)
    unknown_dataset = run_ods("ask", "How many orders?", "--dataset", "orders", cwd=tmp_path)
    for completed in (nothing, unknown_kb, bad_mode, unknown_dataset):
        assert completed.returncode == 2, completed.stdout + completed.stderr
        assert completed.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "Traceback" not in completed.stderr
    assert "name a knowledge base (--kb NAME)" in nothing.stderr
    assert "no knowledge base named 'nope'" in unknown_kb.stderr
    assert "--mode 'guess'" in bad_mode.stderr
    assert "'orders'" in unknown_dataset.stderr
