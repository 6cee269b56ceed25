"""`python -m deployments.serve` builds its deployments from prefect.yaml: nothing is re-declared in Python.

Only the RunnerDeployment objects are built here (no server, nothing served); the served process itself is
checked against a real Prefect server in tests/e2e/test_serve_prefect_yaml.py.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.events import DeploymentCompoundTrigger, DeploymentEventTrigger

from deployments.serve import (
    DeploymentSpecError,
    build_runner_deployments,
    find_worker_deployments,
    main,
    pause_served_deployments,
    read_deployment_specs,
    refuse_worker_deployments,
)

ROOT = Path(__file__).resolve().parents[2]

FLOW_FILE = '''
from prefect import flow


@flow
def echo(message: str = "hi", times: int = 1) -> str:
    """Repeat a message (a flow for the serve tests)."""
    return message * times
'''


def _project(tmp_path: Path, deployments: list[dict[str, Any]]) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "echo.py").write_text(textwrap.dedent(FLOW_FILE))
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump({"name": "t", "deployments": deployments}))
    return tmp_path


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The repository's own deployments, built once for the module (loading the flows takes seconds)."""
    return {deployment.name: deployment for deployment in build_runner_deployments(ROOT)}


def test_every_deployment_of_prefect_yaml_is_served_as_written(served: dict[str, Any]) -> None:
    specs = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]

    assert list(served) == [spec["name"] for spec in specs]
    for spec in specs:
        deployment = served[spec["name"]]
        assert deployment.entrypoint == spec["entrypoint"]
        assert deployment.description == spec.get("description")
        assert deployment.tags == spec.get("tags", [])
        assert deployment.parameters == (spec.get("parameters") or {})
        assert len(deployment.schedules) == len(spec.get("schedules") or [])
        assert len(deployment.triggers) == len(spec.get("triggers") or [])
        for schedule, config in zip(deployment.schedules, spec.get("schedules") or [], strict=True):
            assert schedule.active == config.get("active", True)
            if "cron" in config:
                assert schedule.schedule.cron == config["cron"]


def test_triggers_and_schedules_map_to_prefect_objects(tmp_path: Path) -> None:
    event_trigger = {
        "type": "event",
        "expect": ["ods.object.created"],
        "match": {"prefect.resource.id": "ods.object.raw/*"},
        "parameters": {"message": "{{ event.resource.id }}", "times": "{{ event.payload.times }}"},
    }
    compound = {
        "type": "compound",
        "require": "all",
        "within": 60,
        "triggers": [
            {"type": "event", "expect": ["ods.a"], "match": {"prefect.resource.id": "x"}},
            {"type": "event", "expect": ["ods.b"], "match": {"prefect.resource.id": "x"}},
        ],
    }
    project = _project(
        tmp_path,
        [
            {
                "name": "echo-events",
                "entrypoint": "flows/echo.py:echo",
                "parameters": {"times": 2},
                "triggers": [event_trigger, {**compound, "name": "both-arrived", "enabled": False}],
                "schedules": [{"interval": 60}, {"cron": "0 2 * * *", "timezone": "UTC", "active": False}],
                "work_pool": {"name": "ods-cpu"},  # a worker's concern: ignored by serve
                "concurrency_limit": 1,
            }
        ],
    )

    (deployment,) = build_runner_deployments(project)

    first, second = deployment.triggers
    assert isinstance(first, DeploymentEventTrigger)
    assert first.name == "echo-events__automation_1"  # the name `prefect deploy` gives it
    assert first.expect == {"ods.object.created"}
    assert first.parameters == event_trigger["parameters"]  # templates stay for the automation to render
    assert isinstance(second, DeploymentCompoundTrigger)
    assert (second.name, second.enabled, len(second.triggers)) == ("both-arrived", False, 2)
    interval, cron = deployment.schedules
    assert (
        isinstance(interval.schedule, IntervalSchedule) and interval.schedule.interval.total_seconds() == 60
    )
    assert isinstance(cron.schedule, CronSchedule) and cron.active is False
    assert deployment.concurrency_limit == 1
    assert deployment.parameters == {"times": 2}


def test_concurrency_limit_mapping_form_is_honoured(tmp_path: Path) -> None:
    limit = {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    project = _project(
        tmp_path, [{"name": "one", "entrypoint": "flows/echo.py:echo", "concurrency_limit": limit}]
    )

    (deployment,) = build_runner_deployments(project)

    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_only_selects_deployments_and_rejects_unknown_names(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        [{"name": name, "entrypoint": "flows/echo.py:echo"} for name in ("a", "b", "c")],
    )

    assert [d.name for d in build_runner_deployments(project, ["c", "a"])] == ["a", "c"]
    with pytest.raises(DeploymentSpecError, match=r"no deployment named zz in prefect.yaml; known: a, b, c"):
        build_runner_deployments(project, ["zz"])


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (
            {
                "name": "bad",
                "entrypoint": "flows/echo.py:echo",
                "triggers": [{"type": "event", "within": -5}],
            },
            r"deployment 'bad' trigger 1 is invalid",
        ),
        (
            {"name": "bad", "entrypoint": "flows/echo.py:echo", "schedules": [{"every": "day"}]},
            r"deployment 'bad' has an invalid schedule",
        ),
        ({"name": "bad", "entrypoint": "flows/missing.py:echo"}, r"deployment 'bad': cannot load flow"),
        ({"entrypoint": "flows/echo.py:echo"}, r"lacks `name` or `entrypoint`"),
    ],
)
def test_invalid_specs_name_the_deployment_and_the_problem(
    tmp_path: Path, deployment: dict[str, Any], message: str
) -> None:
    project = _project(tmp_path, [deployment])

    with pytest.raises(DeploymentSpecError, match=message):
        build_runner_deployments(project)


def test_main_reports_an_unreadable_project_without_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--project-dir", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err

    (tmp_path / "prefect.yaml").write_text("name: t\n")
    with pytest.raises(DeploymentSpecError, match="no `deployments:` list"):
        read_deployment_specs(tmp_path / "prefect.yaml")


@dataclass(frozen=True)
class Existing:
    """What the server records of a deployment, as far as serve looks at it."""

    work_pool_name: str | None = None
    pull_steps: list[dict[str, Any]] | None = None
    storage_document_id: str | None = None
    paused: bool = False
    id: str = "id"


def test_prefix_serves_every_deployment_and_its_triggers_under_names_of_its_own(tmp_path: Path) -> None:
    trigger = {"type": "event", "expect": ["ods.object.created"], "match": {"prefect.resource.id": "ods.*"}}
    project = _project(
        tmp_path,
        [
            {"name": "one", "entrypoint": "flows/echo.py:echo", "triggers": [trigger]},
            {"name": "two", "entrypoint": "flows/echo.py:echo"},
        ],
    )

    one, two = build_runner_deployments(project, prefix="dev")

    assert (one.name, two.name) == ("dev-one", "dev-two")
    assert one.full_name == "echo/dev-one"
    assert [t.name for t in one.triggers] == ["dev-one__automation_1"]
    assert [d.name for d in build_runner_deployments(project, ["two"], prefix="dev")] == ["dev-two"]


@pytest.mark.parametrize("prefix", ["-dev", "a/b", "dev team", "x" * 42])
def test_an_unusable_prefix_is_refused_before_any_flow_is_loaded(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(DeploymentSpecError, match=r"--prefix .* is not a usable name: .*e\.g\. --prefix dev"):
        build_runner_deployments(tmp_path, prefix=prefix)  # no prefect.yaml there: the prefix goes first


def test_deployments_that_prefect_deploy_registered_are_refused_by_name(tmp_path: Path) -> None:
    project = _project(
        tmp_path, [{"name": name, "entrypoint": "flows/echo.py:echo"} for name in ("a", "b", "c", "d")]
    )
    deployments = build_runner_deployments(project)
    on_server = {
        "echo/a": Existing(work_pool_name="ods-cpu", pull_steps=[{"set_working_directory": {}}]),
        "echo/b": Existing(),  # served earlier by serve itself: served again, not refused
        "echo/c": Existing(pull_steps=[{"git_clone": {}}]),
    }
    asked: list[str] = []

    def read(full_name: str) -> Existing | None:
        asked.append(full_name)
        return on_server.get(full_name)

    assert find_worker_deployments(deployments, read) == ["echo/a (work pool ods-cpu)", "echo/c (pull steps)"]
    assert asked == ["echo/a", "echo/b", "echo/c", "echo/d"]
    with pytest.raises(DeploymentSpecError) as refused:
        refuse_worker_deployments(deployments, on_server.get)
    message = str(refused.value)
    assert message.startswith("2 deployment(s) of the same name(s) are already on this Prefect server")
    assert "echo/a (work pool ods-cpu), echo/c (pull steps)" in message
    assert "--prefix dev" in message and "prefect deployment delete" in message
    assert "\n" not in message

    refuse_worker_deployments(build_runner_deployments(project, prefix="dev"), on_server.get)  # no clash


def test_only_the_served_deployments_are_paused_when_serve_stops(tmp_path: Path) -> None:
    project = _project(
        tmp_path, [{"name": name, "entrypoint": "flows/echo.py:echo"} for name in ("a", "b", "c", "d", "e")]
    )
    on_server = {
        "echo/a": Existing(id="served-a"),
        "echo/b": Existing(id="worker-b", work_pool_name="ods-cpu"),  # `prefect deploy` replaced it meanwhile
        "echo/c": Existing(id="paused-c", paused=True),
        "echo/e": Existing(id="served-e"),
    }
    paused: list[str] = []

    names = pause_served_deployments(build_runner_deployments(project), on_server.get, paused.append)

    assert (names, paused) == (["echo/a", "echo/e"], ["served-a", "served-e"])
