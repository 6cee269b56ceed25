"""`ods serve` and `ods kb ingest` on one Milvus Lite file at the same time, as real processes.

Milvus Lite lets one process hold a data folder; `ods serve` serves it through the file's shared server
process (``ods.adapters.milvus.lite_server``), which the ingest run joins instead of failing on the lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ods.adapters.milvus.lite_server import shared_lite_server, stop_lite_servers
from ods.adapters.workers.processes import free_port
from ods.settings import Settings, load_settings
from ods.stages.health import run_check
from tests.support.api_server import KB, sample_platform

NEW_DOCUMENT = """# Gift cards

Gift cards never expire and can be spent in every one of our shops in Lisbon and online.
A lost gift card is replaced when the receipt shows its number.
"""


@dataclass(frozen=True)
class ServedHome:
    root: Path
    settings: Settings
    base_url: str
    process: subprocess.Popen[str]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "ODS_HOME": str(settings.home), "ODS_ANSWER__STYLE": "extractive", "COLUMNS": "250"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHome]:
    root = tmp_path_factory.mktemp("api-shared-lite")
    settings = load_settings(home=root / "ods-home", answer={"style": "extractive"})
    sample_platform(root, settings)
    stop_lite_servers()  # the set-up's own Milvus Lite server lets go of the file
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ods", "serve", "--port", str(port)],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        while True:  # pytest-timeout stops a server that never answers
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"ods serve ended with {process.returncode}: {output[-2000:]}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield ServedHome(root, settings, base_url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)


def _search(served: ServedHome, query: str) -> httpx.Response:
    return httpx.post(
        f"{served.base_url}/api/v1/knowledge-bases/{KB}/search",
        json={"query": query, "top_k": 3},
        timeout=120,
    )


def test_an_ingest_runs_beside_the_server_and_its_documents_are_found(served: ServedHome) -> None:
    first = _search(served, "how many days to return an item")
    assert first.status_code == 200, first.text  # the server now holds the file through its shared server
    running = shared_lite_server(served.settings.milvus_uri)
    assert running is not None and served.process.pid in running.clients

    (served.root / "documents" / "gift-cards.md").write_text(NEW_DOCUMENT)
    log = served.root / "ingest.log"
    with log.open("w") as output:  # a file, not a pipe: nobody reads a pipe while the searches run
        ingest = subprocess.Popen(
            [sys.executable, "-m", "ods", "kb", "ingest", str(served.root / "documents"), "--kb", KB],
            env=_env(served.settings),
            cwd=served.root,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        during = []
        while ingest.poll() is None:
            during.append(_search(served, "how many days to return an item").status_code)
            time.sleep(0.2)

    assert ingest.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    assert during and set(during) == {200}, during
    found = _search(served, "do gift cards expire")
    assert found.status_code == 200, found.text
    assert found.json()["data"]["hits"][0]["doc_uri"].endswith("gift-cards.md"), found.text
    answer = httpx.post(
        f"{served.base_url}/v1/chat/completions",
        json={"model": f"kb:{KB}", "messages": [{"role": "user", "content": "Do gift cards expire?"}]},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert "never expire" in answer.json()["choices"][0]["message"]["content"]


def test_doctor_names_the_shared_server_and_it_stops_with_its_last_client(served: ServedHome) -> None:
    check = run_check("milvus", served.settings)  # this process joins the server the doctor finds

    running = shared_lite_server(served.settings.milvus_uri)
    assert running is not None
    assert check.ok, check.detail
    assert f"shared server pid {running.pid} at {running.uri}" in check.detail, check.detail
    stop_lite_servers()  # this process leaves; the server keeps serving `ods serve`
    assert _search(served, "Leeds warehouse").status_code == 200
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=120)
    while not _ended(running.pid):  # its last client is gone: it stops (pytest-timeout stops a hang)
        time.sleep(0.2)
    assert shared_lite_server(served.settings.milvus_uri) is None


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


_HOLDER = """
import sys, time
from ods.adapters.milvus.client import open_milvus_client
from ods.adapters.milvus.lite_server import lite_server_pid
open_milvus_client(sys.argv[1], shared=True).create_collection("kept", dimension=4)
print(lite_server_pid(sys.argv[1]), flush=True)
time.sleep(600)
"""


def test_a_shared_server_whose_clients_were_killed_stops_and_frees_the_file(tmp_path: Path) -> None:
    from ods.adapters.milvus.client import open_milvus_client

    path = tmp_path / "milvus.db"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        server_pid = int(holder.stdout.readline())
        joined = open_milvus_client(str(path))  # no mode asked: the running shared server is joined
        assert joined.list_collections() == ["kept"]
        joined.close()
        stop_lite_servers()  # this process leaves; the holder still uses it
        assert shared_lite_server(str(path)) is not None
    finally:
        holder.kill()  # no exit handler runs: the server finds its last client gone by itself
        holder.wait()
    while not _ended(server_pid):
        time.sleep(0.2)
    reopened = open_milvus_client(str(path))  # in this process again: the file was freed
    try:
        assert reopened.list_collections() == ["kept"]
        assert shared_lite_server(str(path)) is None
    finally:
        reopened.close()
        stop_lite_servers()
