"""`gate_model`: decide whether a newly registered model version is deployed automatically.

Started by ods.model.registered. A version whose metrics meet the bounds configured for its model
(ODS_WATCH__DEPLOY_GATES) is announced as ods.model.approved, labelled with the gate's backend, which starts
deploy-model (vllm, GPU pool) or deploy-model-cpu (transformers); any other version stays registered and the
run says why. The approval event id derives from the version, so gating a
version twice still starts one deployment.
"""

from __future__ import annotations

from prefect import flow

from ods.domain.deploy_gate import GateResult
from tasks.presets import FLOW_RESULTS
from tasks.watch import gate_model_version


@flow(name="gate-model", flow_run_name="gate-{model}", **FLOW_RESULTS)
def gate_model(model: str) -> GateResult:
    """Check a registered model version against its model's deploy gate.

    Args:
        model: NAME@VERSION of the registered model version (NAME alone: the newest registered).
    """
    return gate_model_version(model)


if __name__ == "__main__":
    import sys

    gate_model(sys.argv[1])
