"""Health checks of every component the settings configure (`ods doctor`, the `check_health` flow).

Each check returns a :class:`CheckResult` instead of raising, so one broken component never hides
the state of the others. Checks are cheap by default; ``deep`` also loads the models. A component that
works but holds something a person should fix (names that break the naming rule) is a warning: WARN,
not FAIL, and no failed exit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ods.domain.names import NAME_RULE, NameKind, is_valid_name
from ods.errors import OdsError
from ods.settings import Settings, mask_url

COMPONENTS = ("catalog", "object_store", "milvus", "knowledge_bases", "embedding_model", "llm", "prefect_api")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one component; ``warning``: it works (``ok``) but needs attention."""

    component: str
    ok: bool
    detail: str
    seconds: float
    warning: bool = False

    @property
    def status(self) -> str:
        """OK, WARN or FAIL."""
        return "FAIL" if not self.ok else "WARN" if self.warning else "OK"


class CheckWarning(OdsError):
    """Raised by a check whose component works but holds something to fix; its message is the detail."""


_NAME_FIXES: dict[NameKind, str] = {
    "knowledge base": "ingest its source again under a valid name (ods kb ingest SOURCE --kb NEW_NAME)",
    "dataset": "prepare it again with a valid name: in its spec",
    "model": "train it again with a valid --name",
}
_LISTED_BAD_NAMES = 5


def misnamed_entries(names: dict[NameKind, list[str]]) -> str | None:
    """One line naming the stored names that break the naming rule (escaped) and how to fix each kind;
    None when every name follows it. Such names come from before the rule, when any non-blank text
    was accepted for a knowledge base."""
    bad = {kind: [name for name in listed if not is_valid_name(name)] for kind, listed in names.items()}
    parts = []
    for kind, listed in bad.items():
        if listed:
            shown = ", ".join(repr(name) for name in listed[:_LISTED_BAD_NAMES])
            more = f" and {len(listed) - _LISTED_BAD_NAMES} more" if len(listed) > _LISTED_BAD_NAMES else ""
            parts.append(f"{kind} {shown}{more}: {_NAME_FIXES[kind]}")
    if not parts:
        return None
    count = sum(len(listed) for listed in bad.values())
    return (
        f"{count} name(s) break the naming rule ({NAME_RULE}); they stay readable but cannot be written to "
        f"again: " + "; ".join(parts)
    )


def check_catalog(settings: Settings, deep: bool = False) -> str:
    """Open the catalog (migrating it on first use) and report its revision."""
    from ods.factories import open_catalog

    catalog = open_catalog(settings)
    try:
        detail = f"{mask_url(settings.catalog_url)} at revision {catalog.migrate()}"
        misnamed = misnamed_entries(catalog.list_names())
    finally:
        catalog.close()
    if misnamed is not None:
        raise CheckWarning(f"{detail}; {misnamed}")
    return detail


def check_object_store(settings: Settings, deep: bool = False) -> str:
    """Write, read back and delete a probe object."""
    from ods.factories import build_object_store

    store = build_object_store(settings)
    store.ensure_ready()
    key = "_ods/doctor-probe"
    payload = f"ods doctor {time.time_ns()}".encode()
    store.put_bytes(key, payload)
    try:
        if store.get_bytes(key) != payload:
            raise OdsError(f"object store returned different bytes for {store.uri(key)}")
    finally:
        store.delete(key)
    return f"{store.kind} {store.location} read/write OK"


def check_milvus(settings: Settings, deep: bool = False) -> str:
    """Connect to Milvus and list its collections; for a Milvus Lite file, say which process serves it (the
    file's shared server, with its pid, address and client processes, or this process)."""
    from ods.adapters.milvus.client import is_server_uri
    from ods.adapters.milvus.lite_server import shared_lite_server
    from ods.factories import open_milvus

    client = open_milvus(settings)
    try:
        collections = client.list_collections()
    finally:
        client.close()
    if is_server_uri(settings.milvus_uri):
        return f"server {settings.milvus_uri}: {len(collections)} collection(s)"
    shared = shared_lite_server(settings.milvus_uri)
    served = (
        f"shared server pid {shared.pid} at {shared.uri}, {len(shared.clients)} client process(es)"
        if shared is not None
        else "served in this process (no shared server runs)"
    )
    return f"Milvus Lite {settings.milvus_uri}: {len(collections)} collection(s); {served}"


def check_knowledge_bases(settings: Settings, deep: bool = False) -> str:
    """Deep: compare every knowledge base's catalog with its index, chunk id for chunk id (``ods kb
    verify`` for each); FAIL naming those that drifted. Not deep: nothing is opened."""
    if not deep:
        return "not compared with the index (ods doctor --deep compares every knowledge base)"
    from ods.factories import open_catalog
    from ods.stages.ingest import verify_knowledge_base

    with open_catalog(settings) as catalog:
        names = [record.name for record in catalog.list_knowledge_bases()]
    drifted, chunks = [], 0
    for name in names:
        drift = verify_knowledge_base(settings, name).drift
        chunks += drift.catalog_chunks
        if not drift.ok:
            drifted.append(
                f"{name}: {len(drift.missing):,} chunk(s) missing from the index, {len(drift.orphans):,} orphan(s)"
            )
    if drifted:
        raise OdsError(
            f"{len(drifted)} of {len(names)} knowledge base(s) disagree with the index: {'; '.join(drifted)}; "
            "ods kb verify NAME shows the documents and how to repair"
        )
    return f"{len(names)} knowledge base(s) agree with the index ({chunks:,} chunks)"


def _check_openai_models(endpoint: str, api_key: str | None, model: str, timeout_s: float) -> str:
    url = endpoint.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise OdsError(f"cannot reach {url}: {error}") from None
    if response.status_code != 200:
        raise OdsError(f"{url} answered HTTP {response.status_code}")
    served = [item.get("id") for item in response.json().get("data", [])]
    if model not in served:
        raise OdsError(
            f"model {model!r} is not served by {endpoint} (served: {', '.join(map(str, served)) or 'none'})"
        )
    return f"{model} served by {endpoint}"


def check_embedding_model(settings: Settings, deep: bool = False) -> str:
    """Find the packaged embedding model (deep: load it and embed a sentence) or query the endpoint."""
    config = settings.embedding
    if config.kind == "openai":
        assert config.endpoint is not None
        key = config.api_key.get_secret_value() if config.api_key else None
        return _check_openai_models(config.endpoint, key, config.model, timeout_s=10.0)
    from ods.adapters.models.packaged import embedding_model_dir

    model_dir = embedding_model_dir()
    if not deep:
        return f"{config.model} packaged at {model_dir}"
    from ods.adapters.models.embedder import load_sentence_transformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = load_sentence_transformer(model_dir)
    vector = model.encode(["ods doctor"], show_progress_bar=False)
    return f"{config.model} loaded from {model_dir}, {vector.shape[1]} dimensions"


def check_llm(settings: Settings, deep: bool = False) -> str:
    """Find and read the packaged GGUF model's header, find (deep: load) the local model ODS_LLM__MODEL
    names, or query the configured endpoint."""
    config = settings.llm
    if config.kind == "openai":
        from ods.adapters.models.llm import normalise_base_url

        endpoint = normalise_base_url(config.endpoint or _active_endpoint_url(settings, config.model))
        key = config.api_key.get_secret_value() if config.api_key else None
        return _check_openai_models(endpoint, key, config.model, timeout_s=10.0)
    from gguf import GGUFReader

    from ods.adapters.models.llm import PACKAGED_MODEL_ID
    from ods.adapters.models.packaged import smollm2_gguf_path

    if config.model != PACKAGED_MODEL_ID:
        return _check_local_model(settings, deep)
    path = smollm2_gguf_path()
    reader = GGUFReader(str(path))
    field = reader.get_field("general.architecture")
    architecture = field.contents() if field is not None else "unknown"
    return f"{config.model} ({architecture}, {len(reader.tensors)} tensors) packaged at {path}"


def _check_local_model(settings: Settings, deep: bool) -> str:
    """ODS_LLM__MODEL naming a .gguf file or a Hugging Face folder: found (deep: loaded)."""
    from ods.adapters.models.llm import TransformersLLM
    from ods.factories import build_llm

    llm = build_llm(settings.llm)  # an LLMError naming the model when it is neither
    if not deep or not isinstance(llm, TransformersLLM):
        return f"{settings.llm.model}: a local model, found (`ods doctor --deep` loads it)"
    loaded = llm.loaded
    return f"{settings.llm.model} loaded in {loaded.load_seconds:.1f} s ({type(loaded.model).__name__})"


def _active_endpoint_url(settings: Settings, model: str) -> str:
    """The URL of the catalog's active endpoint for ``model`` (used when ODS_LLM__ENDPOINT is unset)."""
    from ods.factories import open_catalog

    with open_catalog(settings) as catalog:
        endpoint = catalog.active_endpoint(model)
    if endpoint is None:
        raise OdsError(
            f"ODS_LLM__KIND=openai without ODS_LLM__ENDPOINT, and model {model!r} has no active endpoint in "
            "the catalog; set ODS_LLM__ENDPOINT or deploy the model (ods models deploy)"
        )
    return endpoint.url


def check_prefect_api(settings: Settings, deep: bool = False) -> str:
    """Reach the configured Prefect server, or report that flows run on an ephemeral one."""
    from prefect.settings import get_current_settings

    api_url = get_current_settings().api.url
    if not api_url:
        return "no PREFECT_API_URL: flows run on a temporary local server"
    url = api_url.rstrip("/") + "/health"
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError as error:
        raise OdsError(f"cannot reach Prefect API {api_url}: {error}; check PREFECT_API_URL") from None
    if response.status_code != 200:
        raise OdsError(f"Prefect API {api_url} answered HTTP {response.status_code} on /health")
    return f"Prefect API {api_url} healthy"


CHECKS: dict[str, Callable[[Settings, bool], str]] = {
    "catalog": check_catalog,
    "object_store": check_object_store,
    "milvus": check_milvus,
    "knowledge_bases": check_knowledge_bases,
    "embedding_model": check_embedding_model,
    "llm": check_llm,
    "prefect_api": check_prefect_api,
}


def run_check(component: str, settings: Settings, deep: bool = False) -> CheckResult:
    """Run one named check, turning any failure into a FAIL result with its reason."""
    if component not in CHECKS:
        raise OdsError(f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}")
    started = time.perf_counter()
    warning = False
    try:
        detail = CHECKS[component](settings, deep)
        ok = True
    except CheckWarning as caught:
        detail, ok, warning = str(caught), True, True
    except OdsError as error:
        detail, ok = str(error), False
    except Exception as error:  # noqa: BLE001 - a health check reports every failure instead of crashing
        detail, ok = f"{type(error).__name__}: {error}", False
    return CheckResult(component, ok, detail, round(time.perf_counter() - started, 3), warning)


def run_checks(settings: Settings, deep: bool = False) -> list[CheckResult]:
    """Run every check in order."""
    return [run_check(component, settings, deep) for component in COMPONENTS]
