"""The API server as `ods serve` runs it (uvicorn, a free loopback port), over a small real platform.

``sample_platform`` fills an ODS home with what the API tests read: the policy documents ingested into a
knowledge base (the ingest stages the flow's tasks run, packaged embedder, Milvus Lite) and the sales
example registered as a dataset (the prepare stages, without the validation worker). ``running_api``
serves it from a thread of the test process, so the server shares the process's Milvus Lite server and
loaded models with the set-up, and stops it the way SIGTERM does (``should_exit``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ods.adapters.tabular.source import read_table
from ods.adapters.workers.parse_pool import DocumentParserPool
from ods.adapters.workers.processes import free_port
from ods.api.app import create_app
from ods.api.resources import Resources
from ods.domain.cleaning import apply_cleaning
from ods.domain.profiling import profile_frame
from ods.factories import build_embedder, build_object_store, open_catalog, open_index, open_source
from ods.settings import Settings
from ods.stages.ingest import embed_batch, index_batch, open_knowledge_base, plan_ingest, prepare_batch
from ods.stages.prepare import dataset_prefix, fetch_source, load_spec, register_version, write_parquet
from ods.stages.sample_data import write_policy_documents, write_sales_example

KB = "policies"
DATASET = "sales"


def ingest_folder(settings: Settings, kb: str, folder: Path) -> None:
    """Ingest every document of ``folder`` into knowledge base ``kb`` with the stages an ingest run's tasks call."""
    source = open_source(settings, str(folder))
    with open_catalog(settings) as catalog, DocumentParserPool() as pool:
        record = open_knowledge_base(catalog, settings, kb, str(folder))
        embedder = build_embedder(settings.embedding)
        index = open_index(settings, record)
        try:
            prepared = prepare_batch(
                catalog=catalog,
                embedder=embedder,
                pool=pool,
                source=source,
                kb=kb,
                documents=plan_ingest(catalog, kb, source).to_read,
            )
            index_batch(catalog=catalog, index=index, kb=kb, prepared=embed_batch(prepared, embedder))
        finally:
            index.close()


def sample_platform(root: Path, settings: Settings) -> None:
    """Ingest the policy documents as knowledge base ``policies`` and register the sales example."""
    ingest_folder(settings, KB, write_policy_documents(root / "documents"))
    with open_catalog(settings) as catalog:
        _, spec_path = write_sales_example(root / "sales", rows=300)
        loaded = load_spec(str(spec_path), settings)
        data = fetch_source(loaded, settings)
        frame = read_table(data.data, name=data.name, source=loaded.spec.source)
        cleaned = apply_cleaning(frame, loaded.spec, pii_salt="")
        written = write_parquet(build_object_store(settings), dataset_prefix(DATASET), cleaned.frame)
        register_version(
            catalog,
            loaded,
            data,
            written,
            frame=cleaned.frame,
            profile=profile_frame(cleaned.frame, cleaned.pii_kinds),
            validation_rows=[],
            flow_run_id=None,
        )


@dataclass(frozen=True)
class RunningApi:
    base_url: str
    settings: Settings
    resources: Resources


def _serve_without_prefect(server: uvicorn.Server) -> None:
    """Run ``server`` with no Prefect API configured, whatever this test process holds: the flow tier's
    session-wide Prefect test harness sets the process-global settings, and a worker that ran a flow test
    before would otherwise serve as if PREFECT_API_URL named the harness (requests run in this context)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        server.run()


@contextmanager
def running_api(settings: Settings) -> Iterator[RunningApi]:
    """The API served by uvicorn on a free loopback port until the block ends."""
    resources = Resources(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, resources), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(
        target=_serve_without_prefect, args=(server,), name="ods-api-test-server", daemon=True
    )
    thread.start()
    while not server.started:  # a server that cannot start ends its thread (pytest-timeout stops a hang)
        if not thread.is_alive():
            raise RuntimeError(f"the API server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", settings, resources)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        resources.close()


@contextmanager
def served_platform(root: Path, **overrides: object) -> Iterator[RunningApi]:
    """``sample_platform`` in ``root`` served by ``running_api``; answers quote their evidence (no model
    generation), the body limit is 16 KiB unless ``overrides`` say otherwise."""
    from ods.settings import load_settings

    settings = load_settings(
        home=root / "ods-home",
        **{"answer": {"style": "extractive"}, "api": {"max_body_bytes": 16 * 1024}, **overrides},
    )
    sample_platform(root, settings)
    with running_api(settings) as api:
        yield api
