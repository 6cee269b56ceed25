"""`undeploy_model`: stop a model's active endpoint (its server's process group) and mark it stopped."""

from __future__ import annotations

from prefect import flow

from ods.stages.serve import StoppedEndpoints
from tasks.presets import FLOW_RESULTS
from tasks.serve import stop_model_endpoints


@flow(name="undeploy-model", flow_run_name="undeploy-{model}", **FLOW_RESULTS)
def undeploy_model(model: str, grace_s: float = 10.0) -> StoppedEndpoints:
    """Stop the active (or still starting) endpoint(s) of a model; a model with none is reported, not an error.

    Args:
        model: NAME (every active endpoint of the model) or NAME@VERSION (that version's only).
        grace_s: seconds between SIGTERM and SIGKILL of the server's process group.
    """
    return stop_model_endpoints(model, grace_s)


if __name__ == "__main__":
    import sys

    undeploy_model(sys.argv[1])
