"""Every flow and task names the JSON result serializer, so no path (an `ods` command, serve, a worker
without PREFECT_RESULTS_DEFAULT_SERIALIZER=json) can store a pickle; flows persist no results."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

from prefect import Flow
from prefect.tasks import Task

import flows
import tasks


def _module_objects() -> Iterator[Any]:
    for package in (flows, tasks):
        for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            yield from vars(importlib.import_module(module.name)).values()


def test_every_flow_and_task_stores_results_as_json_and_flows_persist_none() -> None:
    objects = list(_module_objects())
    all_flows = {f"{item.fn.__module__}.{item.name}": item for item in objects if isinstance(item, Flow)}
    all_tasks = {f"{item.fn.__module__}.{item.name}": item for item in objects if isinstance(item, Task)}

    assert len(all_flows) >= 10 and len(all_tasks) >= 40
    assert {
        name: item.result_serializer for name, item in all_flows.items() if item.result_serializer != "json"
    } == {}
    assert {
        name: item.result_serializer for name, item in all_tasks.items() if item.result_serializer != "json"
    } == {}
    assert {name for name, item in all_flows.items() if item.persist_result is not False} == set()
    # only the health checks cache (and so persist) their results
    assert {name for name, item in all_tasks.items() if item.persist_result} == {
        "tasks.health.check-component",
        "tasks.health.report-health",
    }
