"""Parse documents in a separate worker process, so a hanging or memory-exploding file costs one document.

``DocumentParserPool`` keeps one worker process alive across documents (a batch pays one interpreter
start, not one per document), caps the worker's address space with ``RLIMIT_AS``, and kills it when a
document runs past the timeout; the next document gets a fresh worker.

The worker is a plain ``python -c`` interpreter (see ``ods.adapters.workers.pipes``): it imports only this
module, the parse function's module and what the parser needs.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ods.adapters.closing import Closeable
from ods.adapters.workers.pipes import READY, ParentLink, WorkerProcess
from ods.domain.documents import (
    MALFORMED,
    MEMORY_LIMIT,
    TIMEOUT,
    TOO_LARGE,
    DocumentRejected,
    ParsedDocument,
)
from ods.errors import OdsError

_WORKER_START_S = 60.0
_WORKER_COMMAND = "from ods.adapters.workers.parse_pool import serve_parse_requests; serve_parse_requests()"


class DocumentParserError(OdsError):
    """The parser worker process cannot be started (a broken environment, not a bad document)."""


class TextLimitExceeded(DocumentRejected):
    """A document whose parsed text is longer than the caller's ``max_chars`` (quarantined as ``too_large``).

    The worker counts the text and answers with the count alone, so the text never crosses the pipe.
    """

    def __init__(self, chars: int, max_chars: int, *, document: str | None = None) -> None:
        super().__init__(
            TOO_LARGE, f"extracted {chars:,} characters, over the limit of {max_chars:,}", document=document
        )
        self.chars = chars
        self.max_chars = max_chars


class ParseFunction(Protocol):
    """``parse_document``'s signature; a module-level function, so the worker can import it by name."""

    def __call__(self, data: bytes, name: str, *, max_pages: int) -> ParsedDocument: ...


class DocumentParserPool(Closeable):
    """A reusable parser worker process; use as a context manager and call ``parse`` per document.

    ``memory_mb`` is the address space the worker may add beyond what its imports take; ``timeout_s``
    bounds one document. ``parse_function`` defaults to ``parse_document`` and must be importable by
    module and name. Calls are serialized; use one pool per thread for parallel parsing.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 60,
        memory_mb: int = 1024,
        max_pages: int = 2000,
        parse_function: ParseFunction | None = None,
        documents_per_worker: int = 500,
    ) -> None:
        if timeout_s <= 0 or memory_mb <= 0 or documents_per_worker <= 0:
            raise ValueError("timeout_s, memory_mb and documents_per_worker must be positive")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_pages = max_pages
        self.documents_per_worker = documents_per_worker
        self._function_ref = _function_reference(parse_function)
        self._worker: WorkerProcess | None = None
        self._parsed_by_worker = 0
        self._lock = threading.Lock()
        self.workers_started = 0

    @property
    def worker_pid(self) -> int | None:
        """The process id of the current worker, None before the first document or after a kill."""
        return self._worker.pid if self._worker is not None else None

    def close(self) -> None:
        """Stop the worker process (it exits on end of input; killed if it does not within seconds)."""
        with self._lock:
            self._stop_worker(graceful=True)

    def parse(self, data: bytes, name: str, *, max_chars: int | None = None) -> ParsedDocument:
        """Parse one document in the worker; raises ``DocumentRejected`` (incl. ``timeout``, ``memory_limit``).

        With ``max_chars``, a document whose text (headings included) is longer raises
        ``TextLimitExceeded`` instead: the worker sends back only the count.
        """
        with self._lock:
            # Two frames, the document's bytes as they are: pickling them with the name copied them.
            header = pickle.dumps((name, max_chars))
            worker = self._ensure_worker()
            try:
                worker.send_frames(header, data)
            except OSError:  # the idle worker died (killed from outside): this document never reached it
                self._stop_worker(graceful=False)
                worker = self._ensure_worker()
                try:
                    worker.send_frames(header, data)
                except OSError:
                    raise self._worker_died(worker, name) from None
            try:
                outcome = worker.receive(self.timeout_s)
            except TimeoutError:
                self._stop_worker(graceful=False)
                raise DocumentRejected(
                    TIMEOUT,
                    f"parsing did not finish within {self.timeout_s:g} s; the parser process was stopped "
                    "(raise the parse timeout if the document is just large)",
                    document=name,
                ) from None
            if outcome is None:
                raise self._worker_died(worker, name)
            self._parsed_by_worker += 1
            if outcome[0] == "memory_limit" or self._parsed_by_worker >= self.documents_per_worker:
                self._stop_worker(graceful=True)  # a worker that hit MemoryError is not trusted further
            return _result_from(outcome, name, self.memory_mb)

    def start(self) -> None:
        """Start the worker now without waiting for it, so its start-up overlaps the caller's own set-up."""
        with self._lock:
            if self._worker is None or not self._worker.running:
                self._spawn_worker()

    def _ensure_worker(self) -> WorkerProcess:
        if self._worker is None or not self._worker.running:
            self._spawn_worker()
        worker = self._worker
        assert worker is not None
        if worker.start_reply(_WORKER_START_S) != READY:
            self._stop_worker(graceful=False)
            raise DocumentParserError(
                f"the document parser process ({sys.executable}, parse function {self._function_ref}) "
                f"did not start within {_WORKER_START_S:g} s; its error is on stderr above. Check that the "
                "environment has pypdf, beautifulsoup4, python-docx and python-pptx installed."
            )
        return worker

    def _spawn_worker(self) -> None:
        self._stop_worker(graceful=False)
        worker = WorkerProcess(_WORKER_COMMAND)
        weakref.finalize(self, worker.kill)  # a pool dropped without close() leaves no orphan
        self.workers_started += 1
        self._worker, self._parsed_by_worker = worker, 0
        worker.send((self._function_ref, self.memory_mb, self.max_pages))

    def _worker_died(self, worker: WorkerProcess, name: str) -> DocumentRejected:
        how = worker.exit_description()
        self._stop_worker(graceful=False)
        return DocumentRejected(
            MEMORY_LIMIT,
            f"the parser process {how} while parsing (memory limit {self.memory_mb} MB or a crash in the parser)",
            document=name,
        )

    def _stop_worker(self, *, graceful: bool) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(grace_s=5 if graceful else 0)


_SHARED_POOL: DocumentParserPool | None = None
_SHARED_POOL_LOCK = threading.Lock()


def shared_parser_pool() -> DocumentParserPool:
    """The process's parser pool with the default limits, kept across calls.

    The batches of an ingest run (parsed in whichever worker thread the task runner picks) and later runs
    in the same process reuse its worker process, which serves up to ``documents_per_worker`` documents
    before a fresh one starts, instead of starting an interpreter per batch. The pool parses one document
    at a time; the worker is killed when the process exits.
    """
    global _SHARED_POOL
    with _SHARED_POOL_LOCK:
        if _SHARED_POOL is None:
            _SHARED_POOL = DocumentParserPool()
        return _SHARED_POOL


def parse_isolated(
    data: bytes, name: str, *, timeout_s: float = 60, memory_mb: int = 1024, max_pages: int = 2000
) -> ParsedDocument:
    """Parse one document in a fresh worker process; for batches use ``DocumentParserPool``."""
    with DocumentParserPool(timeout_s=timeout_s, memory_mb=memory_mb, max_pages=max_pages) as pool:
        return pool.parse(data, name)


def _result_from(outcome: tuple[Any, ...], name: str, memory_mb: int) -> ParsedDocument:
    kind = outcome[0]
    if kind == "parsed" and isinstance(outcome[1], ParsedDocument):
        return outcome[1]
    if kind == "rejected":
        raise DocumentRejected(outcome[1], outcome[2], document=name)
    if kind == "too_long":
        raise TextLimitExceeded(outcome[1], outcome[2], document=name)
    if kind == "memory_limit":
        raise DocumentRejected(
            MEMORY_LIMIT,
            f"parsing needed more than the {memory_mb} MB memory limit (MemoryError)",
            document=name,
        )
    raise DocumentRejected(MALFORMED, f"the parser failed: {outcome[1]}", document=name)


def _function_reference(function: ParseFunction | None) -> str:
    if function is None:
        return "ods.adapters.documents.parsers:parse_document"
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise ValueError(f"parse_function {function!r} must be a module-level function the worker can import")
    return f"{module}:{qualname}"


# --- the worker side -------------------------------------------------------------------------------------


def serve_parse_requests() -> None:
    """Worker main loop: read (name, max_chars) and data frames from stdin, answer outcome frames on stdout."""
    parent = ParentLink()
    config = parent.receive()
    if config is None:
        return
    function_ref, memory_mb, max_pages = config
    module_name, _, qualname = function_ref.partition(":")
    function: Callable[..., ParsedDocument] = getattr(importlib.import_module(module_name), qualname)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # per-font warnings would flood the run's log
    _limit_address_space(memory_mb)
    parent.send(READY)
    while (header := parent.receive()) is not None:
        name, max_chars = header
        data = parent.receive_frame()
        if data is None:
            return
        outcome: tuple[Any, ...]
        try:
            parsed = function(data, name, max_pages=max_pages)
            chars = parsed.char_count
            if max_chars is not None and chars > max_chars:
                outcome = ("too_long", chars, max_chars)
            else:
                outcome = ("parsed", parsed)
            del parsed
        except DocumentRejected as rejected:
            outcome = ("rejected", rejected.reason, rejected.detail)
        except MemoryError:
            outcome = ("memory_limit",)
        except Exception as error:  # noqa: BLE001 - reported to the parent as this document's failure
            outcome = ("failed", f"{type(error).__name__}: {error}")
        del data
        parent.send(outcome)
        if outcome[0] == "memory_limit":
            return


def _limit_address_space(memory_mb: int) -> None:
    """Cap the address space at what the imports already mapped plus ``memory_mb``."""
    import resource

    try:
        # Linux only; elsewhere the cap is absolute.
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        mapped = 0
    limit = mapped + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
