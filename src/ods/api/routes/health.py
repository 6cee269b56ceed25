"""``/healthz`` (the process answers), ``/readyz`` (the doctor's checks, cached briefly), ``/metrics``."""

from __future__ import annotations

import threading
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ods.api.metrics import CONTENT_TYPE
from ods.settings import Settings
from ods.stages.health import CheckResult, run_check

router = APIRouter(tags=["health"])

# The doctor's checks that say whether requests can be served; knowledge-base drift (deep only) and the
# Prefect API (flows, not requests) are left to `ods doctor`.
READINESS_COMPONENTS = ("catalog", "object_store", "milvus", "embedding_model", "llm")


class Liveness(BaseModel):
    status: Literal["ok"] = Field(description="Always 'ok': the process answers.")


class ComponentCheck(BaseModel):
    component: str = Field(description="catalog, object_store, milvus, embedding_model or llm.")
    status: Literal["OK", "WARN", "FAIL"]
    detail: str = Field(description="What was found, or why the check failed.")
    seconds: float


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checked_at: float = Field(
        description="When the checks ran (Unix time); reused for ODS_API__READY_CACHE_S."
    )
    checks: list[ComponentCheck]


class ReadinessCache:
    """The last readiness checks, reused for ``ready_cache_s``; one thread checks while others wait.

    A packaged model that passed once (``kind=local``) is not checked again: its files do not change under
    a running server, and reading the GGUF header costs ~2 s of CPU per check.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._last: Readiness | None = None
        self._passed_for_good: dict[str, CheckResult] = {}

    def get(self) -> Readiness:
        with self._lock:
            last = self._last
            if last is None or time.time() - last.checked_at >= self._settings.api.ready_cache_s:
                last = self._last = _readiness([self._check(component) for component in READINESS_COMPONENTS])
            return last

    def _check(self, component: str) -> CheckResult:
        kept = self._passed_for_good.get(component)
        if kept is not None:
            return kept
        result = run_check(component, self._settings)
        if result.ok and component in self._static_components():
            self._passed_for_good[component] = result
        return result

    def _static_components(self) -> set[str]:
        settings = self._settings
        return {
            component
            for component, kind in (("embedding_model", settings.embedding.kind), ("llm", settings.llm.kind))
            if kind == "local"
        }


def _readiness(results: list[CheckResult]) -> Readiness:
    return Readiness(
        status="ready" if all(result.ok for result in results) else "not_ready",
        checked_at=time.time(),
        checks=[
            ComponentCheck.model_validate(result, from_attributes=True)  # status: OK, WARN or FAIL
            for result in results
        ],
    )


@router.get("/healthz", summary="Liveness: the process answers", response_model=Liveness)
def healthz() -> Liveness:
    """Answers as long as the process serves HTTP; opens nothing."""
    return Liveness(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: catalog, object store, Milvus and models checked",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A component failed its check."}},
)
def readyz(request: Request) -> Response:
    """The checks `ods doctor` runs, for the components requests need; HTTP 503 when one fails."""
    readiness: Readiness = request.app.state.readiness.get()
    return JSONResponse(
        readiness.model_dump(mode="json"), status_code=200 if readiness.status == "ready" else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "The Prometheus text format."}},
)
def metrics(request: Request) -> Response:
    """Requests, latency histograms and errors per route, and model tokens, in the Prometheus text format."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)
