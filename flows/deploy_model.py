"""`deploy_model`: registered model version → OpenAI-compatible server → active endpoint in the catalog.

vLLM on GPU workers, `transformers serve` on CPU. A server that does not start or fails its smoke test is
stopped and recorded as failed; the model's previously active endpoint keeps serving (rollback).
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from ods.stages.serve import EndpointSummary, GpuSettings
from tasks.presets import FLOW_RESULTS
from tasks.serve import (
    activate_model_endpoint,
    check_model_server,
    fail_model_deployment,
    find_live_deployment,
    plan_model_deployment,
    reuse_endpoint,
    stage_model_artifacts,
    start_model_server,
)


@flow(name="deploy-model", flow_run_name="deploy-{model}", **FLOW_RESULTS)
def deploy_model(
    model: str,
    backend: Literal["vllm", "transformers"] | None = None,
    port: int | None = None,
    host: str | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    ready_timeout_s: float = 300.0,
) -> EndpointSummary:
    """Serve a model version behind an OpenAI-compatible endpoint and record it as the model's active one.

    Args:
        model: NAME or NAME@VERSION of a registered causal-LM model version (NAME alone: the newest).
        backend: vllm (GPU) or transformers (CPU); default vllm when a CUDA GPU is present, else transformers.
        port: TCP port of the server; a free one when unset.
        host: address the server binds (127.0.0.1: this machine only; 0.0.0.0: every interface); unset:
            ODS_SERVING__HOST of the worker, 127.0.0.1 unless configured.
        dtype: vllm: weights/activation dtype (auto, bfloat16, float16, float32).
        max_model_len: vllm: context length cap (default: the model's).
        tensor_parallel_size: vllm: number of GPUs to shard the model over.
        gpu_memory_utilization: vllm: fraction of GPU memory the engine may take (0-1].
        ready_timeout_s: how long to wait for /health and /v1/models before the deployment fails.
    """
    gpu = GpuSettings(dtype, max_model_len, tensor_parallel_size, gpu_memory_utilization)
    plan = plan_model_deployment(model, backend, host, port, gpu)
    live = find_live_deployment(plan)
    if live is not None:
        return reuse_endpoint(plan, live)
    local_dir = stage_model_artifacts(plan)
    launch = start_model_server(plan, local_dir)
    check = check_model_server(plan, launch, ready_timeout_s)
    if not check.ok:
        fail_model_deployment(plan, launch, check)  # raises: the run ends Failed with the log tail
    return activate_model_endpoint(plan, launch, check)


if __name__ == "__main__":
    import sys

    deploy_model(sys.argv[1])
