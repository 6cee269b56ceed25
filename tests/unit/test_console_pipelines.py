"""prefect.yaml read as pipelines, and the pipelines graph laid out: the chains the repo's triggers make."""

from __future__ import annotations

from pathlib import Path

import pytest

from ods.api.console.pipelines import lay_out_pipelines, run_form_fields
from ods.api.routes.pipelines import _view
from ods.domain.pipelines import PipelinesFileError, parse_pipelines

ROOT = Path(__file__).resolve().parents[2]


def _deployments() -> list[dict[str, object]]:
    parsed = parse_pipelines((ROOT / "prefect.yaml").read_text())
    return [_view(d, None, None).model_dump(mode="json") for d in parsed]


def test_the_repos_prefect_yaml_reads_as_deployments_with_triggers_and_schedules() -> None:
    deployments = {d.name: d for d in parse_pipelines((ROOT / "prefect.yaml").read_text())}

    assert deployments["deploy-model-cpu"].full_name == "deploy-model/deploy-model-cpu"
    prepare = deployments["prepare-dataset"]
    assert prepare.triggers[0].expect == ("ods.object.created",)
    assert prepare.triggers[0].condition == "kind: spec, raw"
    assert deployments["ingest-documents"].triggers[0].label == "ods.object.created | deleted"
    assert deployments["watch-bucket"].schedules[0].label == "every 1 min"
    assert deployments["check-health"].schedules[0].label == "cron */15 * * * * UTC"
    assert "ods.dataset.registered" in prepare.emits


def test_the_graph_chains_object_created_to_deploy_in_columns() -> None:
    graph = lay_out_pipelines(_deployments())
    x = {node.key: node.x for node in graph.nodes}

    chain = [
        "schedule:watch-bucket:0",
        "deployment:watch-bucket",
        "event:prepare-dataset:0",
        "deployment:prepare-dataset",
        "event:train-model:0",
        "deployment:train-model",
        "event:gate-model:0",
        "deployment:gate-model",
        "event:deploy-model:0",
        "deployment:deploy-model",
    ]
    assert [x[key] for key in chain] == sorted(x[key] for key in chain)
    assert len(set(x[key] for key in chain)) == len(chain)  # one column per step
    assert x["event:ingest-documents:0"] > x["deployment:watch-bucket"]  # document created → ingest
    assert len(graph.edges) >= len(chain) - 1
    assert graph.width >= max(x.values()) and all(node.y + 44 <= graph.height for node in graph.nodes)


def test_a_file_without_deployments_is_refused() -> None:
    with pytest.raises(PipelinesFileError, match="no deployments list"):
        parse_pipelines("name: x\n")
    with pytest.raises(PipelinesFileError, match="invalid YAML"):
        parse_pipelines("deployments: [\n")


def test_the_run_form_has_one_input_per_parameter_of_the_schema() -> None:
    schema = {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {"title": "Model", "type": "string"},
            "deep": {"type": "boolean", "default": False},
            "batch_size": {"type": "integer", "default": 64},
            "mode": {"allOf": [{"$ref": "#/definitions/Mode"}], "default": "auto"},
            "params": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        },
        "definitions": {"Mode": {"enum": ["auto", "hybrid"]}},
    }

    fields = {f.name: f for f in run_form_fields(schema, {"batch_size": 128, "params": {"lr": 0.1}})}

    assert fields["model"].kind == "string" and fields["model"].required and fields["model"].label == "Model"
    assert fields["deep"].kind == "boolean" and not fields["deep"].checked
    assert fields["batch_size"].kind == "integer" and fields["batch_size"].value == "128"  # prefect.yaml's
    assert fields["mode"].kind == "choice" and fields["mode"].options == ("auto", "hybrid")
    assert fields["params"].kind == "json" and fields["params"].value == '{"lr": 0.1}'
