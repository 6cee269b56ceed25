"""`ods models ...`: train a model version (the train-model flow), list model versions, show one.

Mounted on the `ods` command by :mod:`ods.cli`; errors are :class:`~ods.errors.OdsError` lines there.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ods.cli.console import console, field_table, headed_table
from ods.orchestration.temporary_server import start_flow_runner

models_app = typer.Typer(help="Train, list and inspect model versions.", no_args_is_help=True)

_HEADLINE_METRICS = ("accuracy", "f1_macro", "rmse", "r2", "eval_loss", "perplexity")


def _headline(metrics: dict[str, Any]) -> str:
    shown = [(name, metrics[name]) for name in _HEADLINE_METRICS if name in metrics]
    return ", ".join(f"{name}={value:.4g}" for name, value in shown)


# Options are Annotated with plain defaults, so other commands (e.g. `ods demo`) can call this directly.
@models_app.command("train")
def models_train(
    dataset: Annotated[str, typer.Argument(help="NAME or NAME@VERSION of a registered dataset version.")],
    trainer: Annotated[str, typer.Option("--trainer", help="tabular or causal-lm-sft.")] = "tabular",
    target: Annotated[str | None, typer.Option("--target", help="tabular: the column to predict.")] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model", help="causal-lm-sft: local directory of the Hugging Face model to fine-tune."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: the dataset name).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyper-parameter KEY=VALUE (repeatable), e.g. -p max_iter=100."),
    ] = None,
) -> None:
    """Train and register a model version (runs the train-model flow)."""
    from ods.domain.training_spec import (
        check_model_name,
        check_trainer,
        parse_param_assignments,
        parse_trainer_params,
    )

    params = parse_param_assignments(param or [])
    parse_trainer_params(trainer, params)  # a typo fails here, before a flow run is started
    if name is not None:
        check_model_name(name)
    runner = start_flow_runner()
    from flows.train_model import train_model

    result = runner.run(
        train_model,
        dataset,
        check_trainer(trainer),
        target=target,
        base_model=base_model,
        params=params or None,
        model_name=name,
    )
    verb = "already trained" if result.reused else "registered"
    console.print(
        f"[green]{verb}[/green] {result.model}@{result.version} ({result.trainer} on "
        f"{result.dataset}): {_headline(result.metrics)}",
        highlight=False,
    )
    console.print(f"artifacts: {result.artifact_uri}", markup=False, highlight=False)


@models_app.command("list")
def models_list() -> None:
    """Every model version with its trainer, dataset version and headline metrics."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        versions = catalog.list_model_versions()
        datasets = {version.id: catalog.training_dataset(version.id) for version in versions}
    table = headed_table(
        "models", ("model", "version", "status", "trainer", "dataset", "metrics", "created"), overflow="fold"
    )
    for version in versions:
        data = datasets[version.id]
        table.add_row(
            version.model_name,
            str(version.version),
            version.status,
            version.trainer,
            "" if data is None else f"{data.dataset_name}@{data.version}",
            _headline(version.metrics),
            version.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@models_app.command("show")
def models_show(ref: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """Metrics, parameters and lineage (down to the raw source) of a model version."""
    from ods.domain.refs import parse_model_ref
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.train import manifest_of

    name, number = parse_model_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_model_version(name, number)
        data = catalog.training_dataset(version.id)
    manifest = manifest_of(build_object_store(settings), version)
    console.print(
        f"[bold]{version.model_name}@{version.version}[/bold] {version.status}: {version.trainer}, "
        f"{manifest.get('format', 'unknown format')}",
        highlight=False,
    )
    lineage = field_table(
        "lineage",
        (
            ("artifacts", version.artifact_uri),
            (
                "dataset version",
                None if data is None else f"{data.dataset_name}@{data.version} ({data.status})",
            ),
            ("dataset content sha256", None if data is None else data.content_hash),
            ("dataset stored at", None if data is None else data.uri),
            ("raw source", None if data is None else data.source_uri),
            ("raw source sha256", None if data is None else data.source_sha256),
            ("code version", version.code_version),
            ("flow run", version.flow_run_id),
            ("training key", manifest.get("training_key")),
            ("created", version.created_at.isoformat()),
        ),
    )
    console.print(lineage)
    for title, values in (("metrics (held-out split)", version.metrics), ("parameters", version.params)):
        table = Table(title=title)
        table.add_column("name")
        table.add_column("value", overflow="fold")
        for key, value in sorted(values.items()):
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
        console.print(table)
    details = manifest.get("details") or {}
    if details:
        known = ((key, value) for key, value in details.items() if value is not None)
        console.print(field_table("training details", known))


@models_app.command("deploy")
def models_deploy(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION of a registered causal-LM model version.")],
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", help="vllm (GPU) or transformers (CPU); default: vllm when a CUDA GPU is present."
        ),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Server port (default: a free one).")] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address the server binds (default: ODS_SERVING__HOST, 127.0.0.1 unless configured).",
        ),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", help="vllm: context length cap.")
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for the server to answer.")
    ] = 300.0,
    render_k8s: Annotated[
        str | None,
        typer.Option(
            "--render-k8s",
            help="Write a vLLM Deployment + Service manifest for Kubernetes into this folder instead of launching.",
        ),
    ] = None,
    image: Annotated[str | None, typer.Option("--image", help="--render-k8s: the vLLM image.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="--render-k8s: GPUs per replica.")] = 1,
) -> None:
    """Serve a model version behind an OpenAI-compatible endpoint (runs the deploy-model flow)."""
    if render_k8s is not None:
        _render_k8s(ref, render_k8s, image=image, gpus=gpus, max_model_len=max_model_len)
        return
    runner = start_flow_runner()
    from flows.deploy_model import deploy_model
    from ods.stages.serve import choose_backend

    result = runner.run(
        deploy_model,
        ref,
        choose_backend(backend) if backend is not None else None,
        port=port,
        host=host,
        max_model_len=max_model_len,
        ready_timeout_s=ready_timeout,
    )
    verb = "already serving" if result.reused else "deployed"
    console.print(
        f"[green]{verb}[/green] {result.model}@{result.version} with {result.backend} at {result.url}",
        highlight=False,
    )
    console.print(f"model id for requests: {result.served_model}", markup=False, highlight=False)


def _render_k8s(ref: str, directory: str, *, image: str | None, gpus: int, max_model_len: int | None) -> None:
    from pathlib import Path

    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.serve import ADAPTER_FORMAT, LLM_FORMATS, ServingError, resolve_model_version
    from ods.stages.serve_manifests import (
        DEFAULT_VLLM_IMAGE,
        VllmManifestRequest,
        render_vllm_manifests,
        write_manifests,
    )
    from ods.stages.train import manifest_of

    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = resolve_model_version(catalog, ref)
    endpoint = settings.object_store.endpoint
    scheme = "https" if settings.object_store.secure else "http"
    model_format = manifest_of(build_object_store(settings), version).get("format")
    if model_format not in LLM_FORMATS or model_format == ADAPTER_FORMAT:
        raise ServingError(
            f"{version.model_name} v{version.version} is {model_format or 'of unknown format'}: only merged "
            "causal-LM versions (hf-causal-lm) can be rendered for Kubernetes"
        )
    manifests = render_vllm_manifests(
        VllmManifestRequest(
            model_name=version.model_name,
            version=version.version,
            artifact_uri=version.artifact_uri,
            image=image or DEFAULT_VLLM_IMAGE,
            gpu_count=gpus,
            max_model_len=max_model_len,
            object_store_endpoint=f"{scheme}://{endpoint}" if endpoint else None,
            env_secrets=("ods-llm",),
        )
    )
    path = write_manifests(manifests, Path(directory))
    console.print(f"[green]wrote[/green] {path} (Deployment + Service, {gpus} GPU(s))", highlight=False)


@models_app.command("endpoints")
def models_endpoints(
    model: Annotated[str | None, typer.Argument(help="Only this model's endpoints.")] = None,
) -> None:
    """Every endpoint with its model version, backend, URL and status (newest first)."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        endpoints = catalog.list_endpoints(model)
    table = headed_table(
        "endpoints",
        ("id", "model", "version", "backend", "url", "model id", "status", "updated"),
        overflow="fold",
    )
    for endpoint in endpoints:
        table.add_row(
            str(endpoint.id),
            endpoint.model_name,
            str(endpoint.model_version),
            endpoint.backend,
            endpoint.url,
            endpoint.served_model or "",
            endpoint.status,
            endpoint.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@models_app.command("undeploy")
def models_undeploy(
    ref: Annotated[str, typer.Argument(help="NAME (every active endpoint) or NAME@VERSION.")],
    grace: Annotated[float, typer.Option("--grace", help="Seconds between SIGTERM and SIGKILL.")] = 10.0,
) -> None:
    """Stop a model's active endpoint and mark it stopped (runs the undeploy-model flow)."""
    runner = start_flow_runner()
    from flows.undeploy_model import undeploy_model

    result = runner.run(undeploy_model, ref, grace_s=grace)
    colour = "green" if result.stopped else "yellow"
    console.print(f"[{colour}]{result.message}[/{colour}]", highlight=False)
