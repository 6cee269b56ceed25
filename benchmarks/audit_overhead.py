"""Benchmark: what the audit log costs a request of `ods serve`.

Two real servers (uvicorn on free loopback ports, threads of this process) over one empty local platform
(SQLite catalog, one super_admin API key): the app as `ods serve` builds it, and the same app with the
audit middleware taken out (the baseline). One keep-alive client alternates the same request between them,
so both see the same machine load:

- ``POST /api/v1/webhooks`` with a URL the route refuses (400): a state change, so every call writes an
  audit row (with the error's message), while the route itself does almost nothing;
- ``GET /api/v1/runs``: a read, not audited (the middleware only looks).

It prints p50/p95 of each and the ratio audited/baseline, then reads back how many rows the audited server
wrote (it must be one per audited call).

    .venv/bin/python benchmarks/audit_overhead.py            # 300 calls of each
    .venv/bin/python benchmarks/audit_overhead.py --calls 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ods.adapters.catalog.audit import AuditFilter
from ods.adapters.workers.processes import free_port
from ods.api.app import create_app
from ods.api.audit import AuditTrail
from ods.api.resources import Resources
from ods.factories import open_catalog
from ods.settings import Settings, load_settings
from ods.stages.api_keys import create_api_key
from ods.stages.audit import list_audit

BAD_WEBHOOK = {"url": "ftp://example.com/x", "events": ["dataset.created"]}


@contextmanager
def serving(settings: Settings, *, audit: bool) -> Iterator[str]:
    """The app as `ods serve` builds it (without its audit middleware unless ``audit``) on uvicorn, in a
    thread, on a free loopback port; yields its base URL."""
    resources = Resources(settings)
    app = create_app(settings, resources)
    if not audit:
        app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not AuditTrail]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        resources.close()


def timed(client: httpx.Client, method: str, url: str, **options: object) -> float:
    started = time.perf_counter()
    response = client.request(method, url, **options)  # type: ignore[arg-type]  # json= or nothing
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 400), response.text
    return elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as root:
        settings = load_settings(home=Path(root) / "ods-home", api={"rate_limit_metadata": 0})
        with open_catalog(settings) as catalog:
            key = create_api_key(catalog, "bench", roles=("super_admin",)).key
        headers = {"Authorization": f"Bearer {key}"}
        with serving(settings, audit=True) as audited, serving(settings, audit=False) as baseline:
            with httpx.Client(headers=headers, timeout=30) as client:
                for name, method, path, options in (
                    (
                        "POST /api/v1/webhooks (audited)",
                        "POST",
                        "/api/v1/webhooks",
                        {"json": BAD_WEBHOOK},
                    ),
                    ("GET /api/v1/runs (not audited)", "GET", "/api/v1/runs", {}),
                ):
                    for _ in range(20):  # warm-up
                        timed(client, method, audited + path, **options)
                        timed(client, method, baseline + path, **options)
                    with_audit, without = [], []
                    for _ in range(calls):
                        with_audit.append(timed(client, method, audited + path, **options))
                        without.append(timed(client, method, baseline + path, **options))
                    ratio = statistics.median(with_audit) / statistics.median(without)
                    print(
                        f"{name}: p50 {statistics.median(with_audit) * 1000:.2f} ms, "
                        f"p95 {percentile(with_audit, 0.95) * 1000:.2f} ms; without audit p50 "
                        f"{statistics.median(without) * 1000:.2f} ms, p95 {percentile(without, 0.95) * 1000:.2f} ms; "
                        f"ratio p50 {ratio:.3f}x ({calls} calls each, alternated)"
                    )
                client.get(audited + "/api/v1/audit", params={"limit": 1})  # flushes
            with open_catalog(settings) as catalog:
                rows = 0
                offset: int | None = 0
                while offset is not None:
                    page = list_audit(
                        catalog, AuditFilter(action="webhooks.manage"), limit=500, offset=offset
                    )
                    rows, offset = rows + len(page.entries), page.next_offset
            print(f"audit rows written for the audited POSTs: {rows} (expected {calls + 20})")


if __name__ == "__main__":
    main()
