"""A hanging, memory-hungry or crashing parser costs one document; the pool goes on with the next one."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import types
from collections.abc import Iterator

import pytest

from ods.adapters.workers.parse_pool import (
    DocumentParserError,
    DocumentParserPool,
    TextLimitExceeded,
    parse_isolated,
    shared_parser_pool,
)
from ods.domain.documents import DocumentRejected
from tests.support.faulty_parsers import parse_or_misbehave

TEXT = b"Plain words for the index.\n"


def pptx_bytes(slides: int) -> bytes:
    import pptx

    presentation = pptx.Presentation()
    for number in range(slides):
        presentation.slides.add_slide(presentation.slide_layouts[0]).shapes.title.text = f"Slide {number}"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def pool() -> Iterator[DocumentParserPool]:
    with DocumentParserPool(timeout_s=2, memory_mb=256, parse_function=parse_or_misbehave) as pool:
        yield pool


def test_a_batch_of_documents_shares_one_worker_process(pool: DocumentParserPool) -> None:
    texts = [pool.parse(TEXT + str(i).encode(), f"doc-{i}.txt").text for i in range(20)]
    assert texts[3] == "Plain words for the index.\n3"
    assert pool.workers_started == 1


def test_a_hanging_parser_is_stopped_at_the_timeout_and_the_next_document_parses(
    pool: DocumentParserPool,
) -> None:
    started = time.monotonic()
    with pytest.raises(DocumentRejected) as caught:
        pool.parse(TEXT, "hang.txt")
    assert time.monotonic() - started < 2 + 5
    assert caught.value.reason == "timeout"
    assert caught.value.document == "hang.txt"
    assert "did not finish within 2 s" in caught.value.detail
    assert pool.parse(TEXT, "after.txt").text == TEXT.decode().strip()
    assert pool.workers_started == 2


def test_a_parser_allocating_without_bound_hits_the_memory_limit() -> None:
    # A timeout far above the allocation's time: on a busy machine the 2 s one could stop it first.
    with DocumentParserPool(timeout_s=120, memory_mb=256, parse_function=parse_or_misbehave) as pool:
        with pytest.raises(DocumentRejected) as caught:
            pool.parse(TEXT, "bomb.txt")
        assert caught.value.reason == "memory_limit"
        assert "256 MB memory limit" in caught.value.detail
        assert pool.parse(TEXT, "after.txt").parser == "text"


def test_a_worker_that_dies_costs_only_its_document(pool: DocumentParserPool) -> None:
    with pytest.raises(DocumentRejected) as caught:
        pool.parse(TEXT, "crash.txt")
    assert caught.value.reason == "memory_limit"
    assert "was killed by SIGKILL" in caught.value.detail
    assert pool.parse(TEXT, "after.txt").parser == "text"


def test_a_worker_killed_while_idle_is_replaced_for_the_next_document(pool: DocumentParserPool) -> None:
    pool.parse(TEXT, "first.txt")
    assert pool.worker_pid is not None
    os.kill(pool.worker_pid, signal.SIGKILL)
    time.sleep(0.2)
    assert pool.parse(TEXT, "second.txt").parser == "text"
    assert pool.workers_started == 2


def test_the_page_limit_reaches_the_worker() -> None:
    with DocumentParserPool(max_pages=0) as pool, pytest.raises(DocumentRejected) as caught:
        pool.parse(pptx_bytes(2), "deck.pptx")
    assert caught.value.reason == "too_large"
    assert caught.value.detail == "PPTX has 2 slides, more than the limit of 0"


def test_rejections_from_the_parser_keep_their_reason_and_detail(pool: DocumentParserPool) -> None:
    with pytest.raises(DocumentRejected) as caught:
        pool.parse(b" \n", "blank.txt")
    assert (caught.value.reason, caught.value.document) == ("empty", "blank.txt")
    assert pool.workers_started == 1


def test_the_worker_does_not_import_prefect_or_ml_libraries(pool: DocumentParserPool) -> None:
    import prefect  # noqa: F401 - loaded here, in the parent, on purpose

    assert pool.parse(b"", "modules.txt").text == "none"


def test_the_worker_is_replaced_after_its_document_quota() -> None:
    with DocumentParserPool(documents_per_worker=2) as pool:
        for i in range(5):
            pool.parse(TEXT, f"{i}.txt")
        assert pool.workers_started == 3


def test_a_worker_started_ahead_serves_the_first_document() -> None:
    with DocumentParserPool() as pool:
        pool.start()
        started = pool.worker_pid
        pool.start()  # already starting: no second worker

        assert pool.parse(TEXT, "a.txt").text == "Plain words for the index."
        assert (pool.worker_pid, pool.workers_started) == (started, 1)


def test_parse_isolated_parses_one_document_in_a_fresh_process() -> None:
    assert parse_isolated(b"# Title\nbody\n", "note.md", timeout_s=30).sections[0].heading == "Title"


def test_a_parse_function_the_worker_cannot_import_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a module-level function"):
        DocumentParserPool(parse_function=lambda data, name, *, max_pages: None)  # type: ignore[arg-type]


def test_a_worker_that_cannot_start_is_an_environment_error_not_a_document_rejection() -> None:
    missing = types.SimpleNamespace(__module__="ods_no_such_module", __qualname__="parse")
    with (
        DocumentParserPool(parse_function=missing) as pool,
        pytest.raises(DocumentParserError, match="did not start"),
    ):
        pool.parse(TEXT, "a.txt")


def test_the_shared_pool_keeps_its_worker_across_calls_and_threads() -> None:
    pool = shared_parser_pool()
    pool.parse(TEXT, "first.txt")
    started, pid = pool.workers_started, pool.worker_pid

    again = shared_parser_pool()
    again.parse(TEXT, "second.txt")
    assert again is pool and pool.workers_started == started and pool.worker_pid == pid

    # Parse tasks run in whichever thread the task runner picks: they all use the one worker.
    parsed: list[str] = []
    threads = [
        threading.Thread(
            target=lambda n=n: parsed.append(shared_parser_pool().parse(TEXT, f"t{n}.txt").parser)
        )
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(parsed) == 3 and pool.workers_started == started and pool.worker_pid == pid


def test_a_text_over_max_chars_is_refused_in_the_worker_and_only_its_length_comes_back(
    pool: DocumentParserPool,
) -> None:
    long_text = b"word " * 40_000  # 200,000 characters on one line

    with pytest.raises(TextLimitExceeded) as caught:
        pool.parse(long_text, "long.txt", max_chars=100_000)

    assert (caught.value.reason, caught.value.chars, caught.value.max_chars) == (
        "too_large",
        199_999,
        100_000,
    )
    assert caught.value.detail == "extracted 199,999 characters, over the limit of 100,000"
    assert pool.parse(long_text, "long.txt", max_chars=199_999).char_count == 199_999
    assert pool.parse(long_text, "unlimited.txt").char_count == 199_999
    assert pool.workers_started == 1  # a refusal, not a failure: the worker goes on


def test_headings_count_towards_max_chars(pool: DocumentParserPool) -> None:
    document = b"# " + b"H" * 50 + b"\n\nbody\n"

    with pytest.raises(TextLimitExceeded) as caught:
        pool.parse(document, "note.md", max_chars=53)
    assert caught.value.chars == 54
