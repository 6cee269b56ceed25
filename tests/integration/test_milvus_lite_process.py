"""Milvus Lite served from a process of its own (ods.adapters.milvus.lite_server), on real Milvus Lite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.client import VectorIndexError, open_milvus_client
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.lite_server import lite_server_pid, lite_server_uri, stop_lite_servers
from ods.adapters.milvus.schema import ChunkRow

DIMENSION = 4


def _row(number: int) -> ChunkRow:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[number % DIMENSION] = 1.0
    return ChunkRow(
        id=f"chunk-{number}",
        kb="kb",
        doc_uri=f"file:///docs/{number}.md",
        doc_sha256="0" * 64,
        chunk_index=0,
        text=f"document number {number}",
        vector=vector,
    )


def _index(path: Path, *, separate_process: bool) -> MilvusVectorIndex:
    index = MilvusVectorIndex(
        open_milvus_client(str(path), separate_process=separate_process),
        "kb_test",
        DIMENSION,
        "test-model",
        owns_client=True,
    )
    index.ensure_collection()
    return index


def _worker_pid(path: Path) -> int:
    pid = lite_server_pid(str(path))
    assert pid is not None
    return pid


def _wait_gone(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return True  # exited, not yet reaped by its parent
        time.sleep(0.1)
    return False


def test_a_file_served_by_its_own_process_is_shared_by_every_client_of_this_process(tmp_path: Path) -> None:
    path = tmp_path / "milvus.db"
    index = _index(path, separate_process=True)
    try:
        assert index.upsert([_row(1), _row(2)]) == 2
        index.flush()
        pid = _worker_pid(path)
        assert pid != os.getpid()
        # a later client of the same file, whichever kind it asks for, talks to the same server
        assert lite_server_uri(str(path), separate_process=False) == lite_server_uri(
            str(path), separate_process=True
        )
        again = _index(path, separate_process=False)
        assert again.count() == 2
        again.close()
    finally:
        index.close()
        stop_lite_servers()
    assert _wait_gone(pid)
    # the data outlives the server: this process can open the file itself now
    reopened = _index(path, separate_process=False)
    try:
        assert reopened.count() == 2
        assert [hit.id for hit in reopened.search(vector=_row(1).vector, mode="dense", k=1)] == ["chunk-1"]
    finally:
        reopened.close()
        stop_lite_servers()


_HOLDER = """
import sys, time
from ods.adapters.milvus.lite_server import lite_server_pid
from ods.adapters.milvus.client import open_milvus_client
open_milvus_client(sys.argv[1], separate_process=True)
print(lite_server_pid(sys.argv[1]), flush=True)
time.sleep(600)
"""


def test_the_server_process_ends_with_a_killed_parent_and_frees_the_file(tmp_path: Path) -> None:
    path = tmp_path / "milvus.db"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        server_pid = int(holder.stdout.readline())
        # while it runs, the file is taken: a second server is refused with a clear error
        with pytest.raises(VectorIndexError, match="only one process at a time"):
            open_milvus_client(str(path), separate_process=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _wait_gone(server_pid)
    index = _index(path, separate_process=True)
    try:
        assert index.count() == 0
    finally:
        index.close()
        stop_lite_servers()
