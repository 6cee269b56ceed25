"""The whole event-driven platform with every part real: the repo's prefect.yaml deployed with
`prefect --no-prompt deploy --all` to a `prefect server start` on PostgreSQL, a process worker on ods-cpu,
the S3 server the tests start, the catalog on PostgreSQL and a Milvus Lite file.

Objects put into the watched bucket start the chains by themselves once the watcher runs: a raw table and
its spec → prepare-dataset → (ods.dataset.registered with a train: block) train-model → gate-model;
documents under docs/<kb>/ → ingest-documents → searchable; a document deleted → its chunks are gone.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ods.adapters.catalog import Catalog
from ods.adapters.catalog.records import DocumentRecord
from ods.adapters.object_store.minio_store import MinioObjectStore
from ods.errors import NotFoundError
from ods.factories import open_index
from ods.settings import load_settings
from ods.stages.retrieve import search_knowledge_base
from ods.stages.sample_data import SALES_SPEC, generate_sales
from tests.support.postgres import temporary_database
from tests.support.s3_server import S3Server

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STAGE_TIMEOUT_S = 240.0
SCENARIO_TIMEOUT_S = 300.0  # all stages together (~75 s on 2 cores)
STOP_GRACE_S = 20.0
KB = "handbook"
POOLS = {"ods-cpu": "process-cpu.json", "ods-gpu": "process-gpu.json"}
# The deployments the scenario runs, and the scheduled ones it pauses.
SCENARIO = ("watch-bucket", "prepare-dataset", "train-model", "gate-model", "ingest-documents")
UNSCHEDULED = ("check-health", "sync-knowledge-bases")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
T = TypeVar("T")


@dataclass(frozen=True)
class Platform:
    """How the test reaches the running platform."""

    api: str
    store: MinioObjectStore
    ods_env: dict[str, str]
    catalog_url: str
    worker_log: Path
    deployment_ids: dict[str, str]

    def catalog(self) -> Catalog:
        return Catalog.open(self.catalog_url)

    def runs(self) -> list[dict[str, Any]]:
        """Every flow run of the scenario's deployments, oldest first."""
        ids = [self.deployment_ids[name] for name in SCENARIO]
        body = {
            "flow_runs": {"deployment_id": {"any_": ids}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        }
        response = httpx.post(f"{self.api}/flow_runs/filter", json=body, timeout=10)
        response.raise_for_status()
        runs: list[dict[str, Any]] = response.json()
        names = {value: key for key, value in self.deployment_ids.items()}
        for run in runs:
            run["deployment"] = names.get(run["deployment_id"], "?")
        return runs

    def start_run(self, deployment: str) -> str:
        """Start a run of ``deployment`` now (what `prefect deployment run` does)."""
        response = httpx.post(
            f"{self.api}/deployments/{self.deployment_ids[deployment]}/create_flow_run", json={}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def report(self) -> str:
        """Every scenario run (future scheduled ones aside) with its state and parameters, and the tail
        of the worker's log."""
        lines = [
            f"  {run['deployment']:<17} {run['name']:<40} {run['state_type']:<10} {run['state_name']:<24} "
            f"{json.dumps(run['parameters'])[:160]}"
            for run in self.runs()
            if not _waiting_for_schedule(run)
        ]
        log = self.worker_log.read_text(errors="replace").splitlines()[-80:]
        return "flow runs:\n" + "\n".join(lines) + "\nworker log (tail):\n" + "\n".join(log)

    def wait_for(self, what: str, probe: Callable[[], T | None], ends: float | None = None) -> T:
        """Poll ``probe`` until it returns something truthy; after STAGE_TIMEOUT_S (or at monotonic time
        ``ends``, if sooner) fail with the runs and the worker log."""
        deadline = min(time.monotonic() + STAGE_TIMEOUT_S, ends or float("inf"))
        while time.monotonic() < deadline:
            result = probe()
            if result:
                return result
            time.sleep(1.0)
        pytest.fail(f"{what}: not reached in time\n{self.report()}")

    def runs_of(self, deployment: str, state_type: str) -> list[dict[str, Any]]:
        """The scenario runs of ``deployment`` in ``state_type``."""
        return [
            run for run in self.runs() if run["deployment"] == deployment and run["state_type"] == state_type
        ]

    def documents(self, **expected: str) -> dict[str, DocumentRecord] | None:
        """The knowledge base's documents by file name, once their statuses are ``expected`` (else None)."""
        with self.catalog() as catalog:
            try:
                documents = catalog.documents(KB)
            except NotFoundError:  # the knowledge base is not recorded yet
                return None
        by_name = {document.uri.rsplit("/", 1)[-1].removesuffix(".md"): document for document in documents}
        return by_name if {name: doc.status for name, doc in by_name.items()} == expected else None

    def settled_runs(self) -> list[dict[str, Any]] | None:
        """All scenario runs, once every one that is due has finished (future scheduled ones aside)."""
        runs = self.runs()
        busy = [run for run in runs if run["state_type"] not in FINAL and not _waiting_for_schedule(run)]
        return None if busy else runs


def _waiting_for_schedule(run: dict[str, Any]) -> bool:
    """A run the scheduler created (watch-bucket's every minute) that has not started."""
    return bool(run["state_type"] == "SCHEDULED" and run["auto_scheduled"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"prefect server not healthy within {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def _create_pools(api: str) -> None:
    for name, template in POOLS.items():
        base_job_template = json.loads((ROOT / "deployments" / "job_templates" / template).read_text())
        response = httpx.post(
            f"{api}/work_pools/",
            json={"name": name, "type": "process", "base_job_template": base_job_template},
            timeout=10,
        )
        assert response.status_code == 201, response.text


def _deployment_ids(api: str) -> dict[str, str]:
    response = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    response.raise_for_status()
    return {deployment["name"]: deployment["id"] for deployment in response.json()}


@pytest.fixture(scope="module")
def platform(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Server (PostgreSQL), pools, `prefect deploy --all` of prefect.yaml, and a worker on ods-cpu."""
    home = tmp_path_factory.mktemp("orchestration")
    store = MinioObjectStore(
        s3_server.endpoint, f"ods-e2e-{secrets.token_hex(6)}", s3_server.access_key, s3_server.secret_key
    )
    store.ensure_ready()
    with (
        temporary_database("ods_prefect_") as prefect_db,
        temporary_database("ods_catalog_") as catalog_url,
    ):
        port = _free_port()
        api = f"http://127.0.0.1:{port}/api"
        base = {name: value for name, value in os.environ.items() if not name.startswith("ODS_")}
        base.update(
            PREFECT_HOME=str(home / "prefect"),
            PREFECT_API_URL=api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_CLI_PROMPT="false",
        )
        server_log = home / "server.log"
        command = ["server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "prefect", *command],
                env={
                    **base,
                    "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_db.replace("+psycopg", "+asyncpg"),
                    # Test pace: the scheduler looks for deployments every 5 s (not 60), and a run queued
                    # behind ingest-documents' concurrency limit asks for its slot again after 2 s (not 30).
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
                    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker: subprocess.Popen[bytes] | None = None
        try:
            _wait_healthy(api, server, server_log)
            _create_pools(api)
            with Catalog.open(catalog_url) as catalog:
                catalog.migrate()  # once, before runs that would race to create the schema
            ods_env = {
                "ODS_HOME": str(home / "ods"),
                "ODS_CATALOG__URL": catalog_url,
                "ODS_OBJECT_STORE__KIND": "minio",
                "ODS_OBJECT_STORE__ENDPOINT": s3_server.endpoint,
                "ODS_OBJECT_STORE__BUCKET": store.bucket,
                "ODS_OBJECT_STORE__ACCESS_KEY": s3_server.access_key,
                "ODS_OBJECT_STORE__SECRET_KEY": s3_server.secret_key,
            }
            worker_log = home / "worker.log"
            # Started outside the checkout: the deployments' pull step is what puts the runs there.
            worker_dir = home / "worker"
            worker_dir.mkdir()
            with worker_log.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", "ods-cpu"],
                    cwd=worker_dir,
                    env={
                        **base,
                        **ods_env,
                        "PREFECT_WORKER_QUERY_SECONDS": "1",
                        "PREFECT_LOGGING_LEVEL": "INFO",
                    },
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            deploy = subprocess.run(
                [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
                cwd=ROOT,
                env={**base, "ODS_PROJECT_DIR": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
            deployment_ids = _deployment_ids(api)
            # The operational schedules stay out of the scenario: a check-health run on the quarter hour
            # would open the Milvus Lite file (one process at a time) under an ingest run.
            for name in UNSCHEDULED:
                response = httpx.post(
                    f"{api}/deployments/{deployment_ids[name]}/pause_deployment", timeout=10
                )
                response.raise_for_status()
            yield Platform(
                api=api,
                store=store,
                ods_env=ods_env,
                catalog_url=catalog_url,
                worker_log=worker_log,
                deployment_ids=deployment_ids,
            )
        finally:
            if worker is not None:
                _stop(worker, signal.SIGINT)  # a worker ignores SIGTERM
            _stop(server, signal.SIGTERM)


def test_watch_bucket_is_scheduled_every_minute(platform: Platform) -> None:
    deployment = httpx.get(
        f"{platform.api}/deployments/{platform.deployment_ids['watch-bucket']}", timeout=10
    )
    schedules = deployment.json()["schedules"]

    assert [(item["schedule"].get("interval"), item["active"]) for item in schedules] == [(60.0, True)]

    def scheduled_runs() -> list[dict[str, Any]]:
        return [
            run for run in platform.runs() if run["deployment"] == "watch-bucket" and run["auto_scheduled"]
        ]

    assert platform.wait_for("the scheduler creating watch-bucket runs", scheduled_runs)


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 60)  # the waits below fail first, with the runs and the worker log
def test_objects_in_the_bucket_start_every_chain(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    ends = time.monotonic() + SCENARIO_TIMEOUT_S
    token = secrets.token_hex(6)  # contents unique per run: Prefect drops an event id it has already seen
    table = generate_sales(300, seed=int(token[:6], 16)).to_csv(index=False).encode()
    kept = f"# Returns\n\nReturned parcels go to the {token} depot in Leeds within thirty days.\n"
    removed = f"# Vouchers\n\nGift vouchers of the {token} campaign expire after one year.\n"
    # The table goes in before its spec, so neither of the two prepare runs they start misses the table.
    platform.store.put_bytes("raw/sales.csv", table)
    platform.store.put_bytes("raw/sales.yaml", SALES_SPEC.encode())
    platform.store.put_bytes(f"docs/{KB}/returns.md", kept.encode())
    platform.store.put_bytes(f"docs/{KB}/vouchers.md", removed.encode())

    platform.start_run("watch-bucket")
    indexed = platform.wait_for(
        "documents → watch-bucket → ingest-documents → both indexed",
        lambda: platform.documents(returns="indexed", vouchers="indexed"),
        ends,
    )
    platform.store.delete(f"docs/{KB}/vouchers.md")
    platform.start_run("watch-bucket")
    platform.wait_for(
        "raw table and spec → prepare-dataset → train-model → gate-model",
        lambda: platform.runs_of("gate-model", "COMPLETED"),
        ends,
    )
    platform.wait_for(
        "document deleted → watch-bucket → ingest-documents → marked deleted",
        lambda: platform.documents(returns="indexed", vouchers="deleted"),
        ends,
    )
    runs = platform.wait_for("every run started by the scenario to finish", platform.settled_runs, ends)

    with platform.catalog() as catalog:
        datasets = catalog.list_dataset_versions("sales")
        models = catalog.list_model_versions("sales")
    assert [(version.version, version.status) for version in datasets] == [(1, "registered")]
    assert [(model.version, model.trainer, model.dataset_version_id) for model in models] == [
        (1, "tabular", datasets[0].id)
    ]
    assert all(document.chunk_count > 0 for document in indexed.values())
    # The raw table and the spec each start prepare-dataset; both end on version 1, whose one
    # ods.dataset.registered event (a deterministic id) starts train-model once.
    finished = Counter((run["deployment"], run["state_type"]) for run in runs if run["state_type"] in FINAL)
    assert not [run for run in runs if run["state_type"] in ("FAILED", "CRASHED")], platform.report()
    assert finished["prepare-dataset", "COMPLETED"] == 2, platform.report()
    assert finished["train-model", "COMPLETED"] == 1, platform.report()
    assert finished["gate-model", "COMPLETED"] == 1, platform.report()

    # Milvus Lite is a file one process holds at a time: read it now that no run has it open.
    for name, value in platform.ods_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    hits = search_knowledge_base(settings, KB, f"where do returned parcels go ({token} depot)", k=3)
    with platform.catalog() as catalog:
        index = open_index(settings, catalog.get_knowledge_base(KB))
    try:
        chunks = {name: index.count({"doc_uri": document.uri}) for name, document in indexed.items()}
    finally:
        index.close()
    assert hits and token in hits[0].text and hits[0].doc_uri == indexed["returns"].uri
    assert indexed["vouchers"].uri not in {hit.doc_uri for hit in hits}
    assert chunks == {"returns": indexed["returns"].chunk_count, "vouchers": 0}
