"""Benchmark of `ods serve`: HTTP latency against the stage functions in-process and an `ods ask` process,
then throughput and errors under concurrent clients.

Builds a knowledge base of the sample policy documents in a temporary ODS_HOME (the ingest stages, packaged
embedder, Milvus Lite), starts `ods serve --preload` on a free loopback port as a process of its own, and
measures in one run, on the same machine:

- baselines, in this process on adapters kept open as the server keeps them (the file's shared Milvus Lite
  server, the same embedder): ``search_index`` (hybrid, k=5) and ``answer_question`` (extractive, with the
  kept adapters), warm p50/p95 of N calls after 3 warm-up calls;
- the same over HTTP, one keep-alive client: ``POST /api/v1/knowledge-bases/{kb}/search`` and
  ``POST /v1/chat/completions`` on ``kb:policies`` (non-stream), warm p50/p95 and their overhead against the
  baseline (goal: <= 10 % or <= 5 ms), each call alternated with its baseline's, and the mean time the
  server itself counted for them (``/metrics``: the gap inside the server process); ``GET /healthz`` shows
  what HTTP alone costs (uvicorn, the client, no API key check, no work) and ``GET
  /api/v1/knowledge-bases/{kb}`` what a route that only reads the catalog costs (the API key check, the
  envelope, two catalog reads);
- one `ods ask --kb policies` process, wall time (what a question costs without the server);
- C concurrent clients (default 32), each alternating search and chat for D seconds (default 60): requests
  per second, errors (any non-200 or transport error), p50/p95 under load, p95 against p50 under load
  (goal: 0 errors, p95 <= 20x p50) and p50 under load against the warm p50 (the queue: model work takes
  one lock, so C clients wait about C requests' time).

Rate limits, when the server has them, are switched off for the run (every client is one address).

    .venv/bin/python benchmarks/api.py                 # 20 warm requests, 32 clients for 60 s
    .venv/bin/python benchmarks/api.py --duration 20   # a shorter load phase on a busy machine
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

KB = "policies"
QUERY = "how many days do customers have to return a product"
QUESTION = "How long do customers have to return a product?"
WARM_UP = 3
ROUTES = {"search": "/api/v1/knowledge-bases/{kb}/search", "chat": "/v1/chat/completions"}


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return cls(statistics.median(ordered) * 1000, p95 * 1000)


def timed_pair(
    baseline: Callable[[], object], measured: Callable[[], object], count: int
) -> tuple[Latency, Latency]:
    """Each call run ``WARM_UP`` times, then ``count`` times each, alternately, so what else the machine
    does at the time weighs on both alike."""
    for _ in range(WARM_UP):
        baseline()
        measured()
    seconds: tuple[list[float], list[float]] = ([], [])
    for _ in range(count):
        for call, kept in ((baseline, seconds[0]), (measured, seconds[1])):
            started = time.perf_counter()
            call()
            kept.append(time.perf_counter() - started)
    return Latency.of(seconds[0]), Latency.of(seconds[1])


def server_totals(http: httpx.Client, base_url: str, route: str) -> tuple[float, float]:
    """Seconds and requests the server has counted for ``route`` (``GET /metrics``, its latency histogram:
    from a request's arrival in the app to the end of its answer)."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in http.get(f"{base_url}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        for kind in totals:
            if name.startswith(f"ods_api_request_duration_seconds_{kind}{{") and f'route="{route}"' in name:
                totals[kind] += float(value)
    return totals["sum"], totals["count"]


def in_server_ms(http: httpx.Client, base_url: str, route: str, measure: Callable[[], object]) -> float:
    """The mean time the server counted for ``route`` over the requests ``measure`` makes."""
    seconds, count = server_totals(http, base_url, route)
    measure()
    seconds_after, count_after = server_totals(http, base_url, route)
    return (seconds_after - seconds) * 1000 / max(1.0, count_after - count)


def build_knowledge_base(root: Path, home: Path) -> None:
    """The sample policy documents ingested into ``policies`` with the ingest stages."""
    from ods.adapters.milvus.lite_server import stop_lite_servers
    from ods.adapters.workers.parse_pool import DocumentParserPool
    from ods.factories import build_embedder, open_catalog, open_index, open_source
    from ods.settings import load_settings
    from ods.stages.ingest import embed_batch, index_batch, open_knowledge_base, plan_ingest, prepare_batch
    from ods.stages.sample_data import write_policy_documents

    settings = load_settings(home=home)
    folder = write_policy_documents(root / "documents")
    source = open_source(settings, str(folder))
    with open_catalog(settings) as catalog, DocumentParserPool() as pool:
        record = open_knowledge_base(catalog, settings, KB, str(folder))
        embedder = build_embedder(settings.embedding)
        index = open_index(settings, record)
        try:
            prepared = prepare_batch(
                catalog=catalog,
                embedder=embedder,
                pool=pool,
                source=source,
                kb=KB,
                documents=plan_ingest(catalog, KB, source).to_read,
            )
            index_batch(catalog=catalog, index=index, kb=KB, prepared=embed_batch(prepared, embedder))
            index.write_search_snapshot()
        finally:
            index.close()
    stop_lite_servers()  # the file is free for the server's shared Milvus Lite server


def server_env(home: Path) -> dict[str, str]:
    from ods.settings import ApiSettings

    env = {**os.environ, "ODS_HOME": str(home), "ODS_ANSWER__STYLE": "extractive"}
    for name in ("rate_limit_inference", "rate_limit_query", "rate_limit_metadata"):
        if name in ApiSettings.model_fields:
            env[f"ODS_API__{name.upper()}"] = "0"
    return env


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ods", "serve", "--port", str(port), "--preload"],
        env=server_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        if process.poll() is not None:
            raise SystemExit(f"ods serve ended with {process.returncode} before it answered")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)


@dataclass
class Load:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "chat": []})
    errors: dict[str, int] = field(default_factory=lambda: {"search": 0, "chat": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_load(base_url: str, clients: int, duration_s: float) -> tuple[Load, float]:
    load = Load()
    deadline = time.monotonic() + duration_s
    requests = {
        "search": (f"{base_url}/api/v1/knowledge-bases/{KB}/search", {"query": QUERY, "top_k": 5}),
        "chat": (
            f"{base_url}/v1/chat/completions",
            {"model": f"kb:{KB}", "messages": [{"role": "user", "content": QUESTION}]},
        ),
    }

    def client(number: int) -> None:
        kinds = ["search", "chat"] if number % 2 == 0 else ["chat", "search"]
        with httpx.Client(timeout=300) as http:
            turn = 0
            while time.monotonic() < deadline:
                kind = kinds[turn % 2]
                turn += 1
                url, body = requests[kind]
                started = time.perf_counter()
                try:
                    ok = http.post(url, json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with load.lock:
                    if ok:
                        load.seconds[kind].append(elapsed)
                    else:
                        load.errors[kind] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20, help="warm requests per measurement (default 20)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of concurrent load (default 60)"
    )
    args = parser.parse_args()

    from ods.adapters.milvus.lite_server import stop_lite_servers
    from ods.adapters.workers.processes import free_port
    from ods.api.resources import Resources
    from ods.factories import with_shared_lite_server
    from ods.settings import load_settings
    from ods.stages.answer import answer_question
    from ods.stages.retrieve import search_index

    with tempfile.TemporaryDirectory(prefix="ods-bench-api-") as folder:
        root = Path(folder)
        home = root / "ods-home"
        started = time.perf_counter()
        build_knowledge_base(root, home)
        print(
            f"knowledge base {KB!r}: sample policy documents ingested in {time.perf_counter() - started:.1f} s"
        )
        port = free_port()
        started = time.perf_counter()
        server = start_server(home, port)
        print(f"ods serve --preload ready in {time.perf_counter() - started:.1f} s on port {port}\n")
        base_url = f"http://127.0.0.1:{port}"
        try:
            settings = with_shared_lite_server(load_settings(home=home, answer={"style": "extractive"}))
            resources = Resources(settings)
            search_url = f"{base_url}/api/v1/knowledge-bases/{KB}/search"
            chat_url = f"{base_url}/v1/chat/completions"
            chat_body = {"model": f"kb:{KB}", "messages": [{"role": "user", "content": QUESTION}]}
            try:
                with httpx.Client(timeout=300) as http:

                    def stage_search() -> object:  # the route looks the knowledge base up each time too
                        found = resources.catalog.get_knowledge_base(KB)
                        with resources.model_lock:
                            return search_index(resources.index(found), resources.embedder, found, QUERY, k=5)

                    def stage_answer() -> object:
                        with resources.model_lock:
                            return answer_question(
                                settings, QUESTION, kb=KB, llm=resources.llm, adapters=resources
                            )

                    def http_search() -> object:
                        response = http.post(search_url, json={"query": QUERY, "top_k": 5})
                        response.raise_for_status()
                        return response

                    def http_chat() -> object:
                        response = http.post(chat_url, json=chat_body)
                        response.raise_for_status()
                        return response

                    stage: dict[str, Latency] = {}
                    over_http: dict[str, Latency] = {}
                    in_server: dict[str, float] = {}

                    def measure_search() -> None:
                        stage["search"], over_http["search"] = timed_pair(
                            stage_search, http_search, args.requests
                        )

                    def measure_chat() -> None:
                        stage["chat"], over_http["chat"] = timed_pair(stage_answer, http_chat, args.requests)

                    in_server["search"] = in_server_ms(http, base_url, ROUTES["search"], measure_search)
                    in_server["chat"] = in_server_ms(http, base_url, ROUTES["chat"], measure_chat)
                    floor = timed_pair(lambda: None, lambda: http.get(f"{base_url}/healthz"), args.requests)[
                        1
                    ]
                    status = timed_pair(
                        lambda: None,
                        lambda: http.get(f"{base_url}/api/v1/knowledge-bases/{KB}"),
                        args.requests,
                    )[1]
            finally:
                resources.close()
                stop_lite_servers()  # this process leaves the shared Milvus Lite server to `ods serve`
            started = time.perf_counter()
            asked = subprocess.run(
                [sys.executable, "-m", "ods", "ask", QUESTION, "--kb", KB],
                env=server_env(home),
                capture_output=True,
                text=True,
                check=False,
            )
            ask_s = time.perf_counter() - started
            load, load_s = run_load(base_url, args.clients, args.duration)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)

    print(f"warm latency, {args.requests} requests after {WARM_UP} (one client; stage and HTTP alternated)")
    print(f"{'request':46} {'p50 ms':>8} {'p95 ms':>8} {'overhead p50':>18}")
    names = {
        "search": "POST /api/v1/knowledge-bases/{kb}/search",
        "chat": "POST /v1/chat/completions kb: (extractive)",
    }
    for kind in ("search", "chat"):
        base, http_figure = stage[kind], over_http[kind]
        extra = http_figure.p50_ms - base.p50_ms
        print(f"{'  baseline: stage in-process (' + kind + ')':46} {base.p50_ms:8.1f} {base.p95_ms:8.1f}")
        print(
            f"{'  ' + names[kind]:46} {http_figure.p50_ms:8.1f} {http_figure.p95_ms:8.1f} "
            f"{extra:+8.1f} ms {http_figure.p50_ms / base.p50_ms:5.2f}x"
        )
        print(f"{'    of which in the server (mean, /metrics)':46} {in_server[kind]:8.1f}")
    print(f"{'  GET /healthz (HTTP alone: no auth, no work)':46} {floor.p50_ms:8.1f} {floor.p95_ms:8.1f}")
    print(
        f"{'  GET /api/v1/knowledge-bases/{kb} (key check, reads)':46} {status.p50_ms:8.1f} {status.p95_ms:8.1f}"
    )
    state = "ok" if asked.returncode == 0 else f"exit {asked.returncode}: {asked.stderr.strip()[-300:]}"
    print(
        f"\nods ask --kb {KB} (one process, {state}): {ask_s:.1f} s wall = "
        f"{ask_s * 1000 / over_http['chat'].p50_ms:.0f}x the chat p50 over HTTP"
    )
    print(f"\n{args.clients} concurrent clients, search and chat alternated, {load_s:.0f} s")
    print(
        f"{'request':8} {'done':>6} {'req/s':>7} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p95/p50':>8} {'p50/warm p50':>13}"
    )
    for kind in ("search", "chat"):
        done = load.seconds[kind]
        figure = Latency.of(done) if done else Latency(float("nan"), float("nan"))
        print(
            f"{kind:8} {len(done):6} {len(done) / load_s:7.1f} {load.errors[kind]:6} {figure.p50_ms:8.0f} "
            f"{figure.p95_ms:8.0f} {figure.p95_ms / figure.p50_ms:7.1f}x "
            f"{figure.p50_ms / over_http[kind].p50_ms:12.1f}x"
        )
    total = sum(len(done) for done in load.seconds.values())
    errors = sum(load.errors.values())
    print(f"all      {total:6} {total / load_s:7.1f} {errors:6}")


if __name__ == "__main__":
    main()
