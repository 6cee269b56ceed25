"""Serve every deployment of prefect.yaml from one process: the development loop without a worker.

`python -m deployments.serve` reads the deployments list of `prefect.yaml` (names, entrypoints, parameters,
tags, schedules, triggers, concurrency limits) and hands them to Prefect's `serve()`, so schedules and event
triggers behave as they do after `prefect deploy`, but the runs execute in this process's machine and
environment. Work pools, job variables and pull steps are a worker's concern and are ignored here.

A served deployment has no work pool and no pull steps: registered under the name of a deployment that
`prefect deploy` put on the same server, it would replace it, and every run of it would crash on the
workers ("Downloading flow code from storage at None"). So serve first reads the server's deployments of
the same names and refuses (exit 2, naming them) when one belongs to a worker; `--prefix NAME` serves
under names of its own (`NAME-<deployment>`). On Ctrl-C (or SIGTERM) serve pauses the deployments it
registered, and nothing else.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from pydantic import TypeAdapter, ValidationError

from ods.errors import OdsError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

PROJECT_DIR = Path(__file__).resolve().parents[1]
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")


class DeploymentSpecError(OdsError):
    """A deployment in prefect.yaml cannot be turned into a served deployment."""


def read_deployment_specs(project_file: Path) -> list[dict[str, Any]]:
    """The `deployments:` list of a prefect.yaml, each entry a plain mapping (YAML anchors resolved)."""
    try:
        document = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DeploymentSpecError(
            f"cannot read {project_file}: {error}. Run from the project root or pass --project-dir."
        ) from error
    specs = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise DeploymentSpecError(f"{project_file} has no `deployments:` list of mappings; nothing to serve.")
    for spec in specs:
        if not spec.get("name") or not spec.get("entrypoint"):
            raise DeploymentSpecError(
                f"a deployment in {project_file} lacks `name` or `entrypoint`: {spec!r}. Add both."
            )
    return specs


def select_specs(specs: Sequence[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The specs named in `names` (all of them when `names` is empty), refusing unknown names."""
    if not names:
        return list(specs)
    known = {spec["name"] for spec in specs}
    unknown = sorted(set(names) - known)
    if unknown:
        raise DeploymentSpecError(
            f"no deployment named {', '.join(unknown)} in prefect.yaml; known: {', '.join(sorted(known))}."
        )
    return [spec for spec in specs if spec["name"] in names]


def build_schedules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Schedule mappings exactly as `prefect deploy` builds them from a deployment's `schedules:`."""
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    try:
        return [
            _schedule_config_to_deployment_schedule(dict(config)) for config in spec.get("schedules") or []
        ]
    except (ValueError, ValidationError) as error:
        raise DeploymentSpecError(f"deployment {spec['name']!r} has an invalid schedule: {error}") from error


def build_triggers(spec: dict[str, Any], deployment_name: str | None = None) -> list[Any]:
    """Deployment triggers (event, metric, compound, sequence) parsed as `prefect deploy` parses them.

    Unnamed triggers get the name `prefect deploy` gives them (`<deployment>__automation_<n>`, with the
    served ``deployment_name``) so served and deployed automations are recognisably the same.
    """
    from prefect.events import DeploymentTriggerTypes

    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
    triggers = []
    for index, config in enumerate(spec.get("triggers") or [], start=1):
        config = {"name": f"{deployment_name or spec['name']}__automation_{index}", **config}
        try:
            triggers.append(adapter.validate_python(config))
        except ValidationError as error:
            raise DeploymentSpecError(
                f"deployment {spec['name']!r} trigger {index} is invalid: {error}"
            ) from error
    return triggers


def build_concurrency_limit(spec: dict[str, Any]) -> Any:
    """`concurrency_limit:` as an int or, in its mapping form (limit, collision_strategy, ...), a config."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    limit = spec.get("concurrency_limit")
    if not isinstance(limit, dict):
        return limit
    try:
        return ConcurrencyLimitConfig.model_validate(limit)
    except ValidationError as error:
        raise DeploymentSpecError(
            f"deployment {spec['name']!r} has an invalid concurrency_limit {limit!r}: {error}"
        ) from error


def served_name(name: str, prefix: str = "") -> str:
    """The name a deployment is served under: its own, or ``<prefix>-<name>`` (refusing a prefix Prefect
    could not use in a deployment name)."""
    if not prefix:
        return name
    if not _PREFIX.match(prefix):
        raise DeploymentSpecError(
            f"--prefix {prefix!r} is not a usable name: use 1-41 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. --prefix dev)"
        )
    return f"{prefix}-{name}"


def build_runner_deployments(
    project_dir: Path = PROJECT_DIR, names: Sequence[str] = (), prefix: str = ""
) -> list[RunnerDeployment]:
    """One `RunnerDeployment` per deployment of `<project_dir>/prefect.yaml`, ready for `serve()`, named
    ``<prefix>-<name>`` when a ``prefix`` is given.

    Entrypoints resolve against `project_dir`, so this works from any working directory. Nothing is sent to
    the Prefect API until the deployments are served.
    """
    from prefect.flows import Flow, load_flow_from_entrypoint

    served_name("check", prefix)  # a bad prefix is refused before any flow is loaded
    specs = select_specs(read_deployment_specs(project_dir / "prefect.yaml"), names)
    runner_deployments: list[RunnerDeployment] = []
    for spec in specs:
        path, _, function = str(spec["entrypoint"]).partition(":")
        entrypoint = f"{project_dir / path}:{function}"
        try:
            flow: Flow[..., Any] = load_flow_from_entrypoint(entrypoint)
        except (OSError, ImportError, AttributeError, SyntaxError) as error:
            raise DeploymentSpecError(
                f"deployment {spec['name']!r}: cannot load flow {spec['entrypoint']!r} from {project_dir}: {error}"
            ) from error
        name = served_name(spec["name"], prefix)
        schedules, triggers = build_schedules(spec), build_triggers(spec, name)
        try:
            # A sync call here, so `to_deployment` returns the deployment itself, not a coroutine.
            runner_deployments.append(
                cast(
                    "RunnerDeployment",
                    flow.to_deployment(
                        name=name,
                        description=spec.get("description"),
                        tags=spec.get("tags"),
                        parameters=spec.get("parameters"),
                        schedules=schedules,
                        triggers=triggers,
                        concurrency_limit=build_concurrency_limit(spec),
                    ),
                )
            )
        except ValidationError as error:
            raise DeploymentSpecError(f"deployment {spec['name']!r} is invalid: {error}") from error
    return runner_deployments


DeploymentReader = Callable[[str], Any]
"""Reads a deployment by its full name (``flow/deployment``): the server's record, or None when absent."""


def is_worker_deployment(existing: Any) -> bool:
    """Whether a deployment on the server is one `prefect deploy` registered for workers (a work pool, pull
    steps or flow-code storage), not one that serve registered."""
    return bool(
        getattr(existing, "work_pool_name", None)
        or getattr(existing, "pull_steps", None)
        or getattr(existing, "storage_document_id", None)
    )


def find_worker_deployments(
    runner_deployments: Sequence[RunnerDeployment], read_deployment: DeploymentReader
) -> list[str]:
    """The worker deployments already on the server under the names serve would register (serving over
    one would replace it), each as ``flow/name (work pool P)`` for the refusal."""
    found = []
    for deployment in runner_deployments:
        existing = read_deployment(deployment.full_name)
        if existing is not None and is_worker_deployment(existing):
            pool = getattr(existing, "work_pool_name", None)
            found.append(f"{deployment.full_name} ({f'work pool {pool}' if pool else 'pull steps'})")
    return found


def refuse_worker_deployments(
    runner_deployments: Sequence[RunnerDeployment], read_deployment: DeploymentReader
) -> None:
    """Raise :class:`DeploymentSpecError` naming every worker deployment serve would replace, and the two
    ways out."""
    clashing = find_worker_deployments(runner_deployments, read_deployment)
    if clashing:
        raise DeploymentSpecError(
            f"{len(clashing)} deployment(s) of the same name(s) are already on this Prefect server for "
            f"workers: {', '.join(clashing)}. Serving them here would replace them and their runs would "
            "crash on the workers. Serve under names of your own with `python -m deployments.serve "
            "--prefix dev` (dev-<name>), or delete those deployments first (`prefect deployment delete "
            "FLOW/NAME`)."
        )


def pause_served_deployments(
    runner_deployments: Sequence[RunnerDeployment],
    read_deployment: DeploymentReader,
    pause: Callable[[Any], None],
) -> list[str]:
    """Pause what this serve registered, so no schedule piles up runs that nobody executes, and nothing
    else: a deployment of the same name that `prefect deploy` registered meanwhile is left alone. Returns
    the full names paused."""
    paused = []
    for deployment in runner_deployments:
        existing = read_deployment(deployment.full_name)
        if existing is None or is_worker_deployment(existing) or getattr(existing, "paused", False):
            continue
        pause(existing.id)
        paused.append(deployment.full_name)
    return paused


@contextmanager
def prefect_api() -> Iterator[tuple[DeploymentReader, Callable[[Any], None]]]:
    """A deployment reader and a pauser on the configured Prefect API; an unreachable API is a
    :class:`DeploymentSpecError` naming it."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:

        def read(full_name: str) -> Any:
            try:
                return client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                return None
            except httpx.HTTPError as error:
                raise DeploymentSpecError(
                    f"cannot read deployment {full_name} from the Prefect API at {client.api_url}: {error}. "
                    "Start the server (`prefect server start`) or point PREFECT_API_URL at one."
                ) from error

        yield read, client.pause_deployment


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serve",
        description="Serve all flows of prefect.yaml (schedules and triggers included) in this process.",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=PROJECT_DIR,
        help="Folder holding prefect.yaml (default: this checkout).",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="Serve only this deployment (repeatable)."
    )
    parser.add_argument("--limit", type=int, default=None, help="Most flow runs executing at the same time.")
    parser.add_argument(
        "--prefix",
        default="",
        metavar="NAME",
        help="Serve every deployment as NAME-<deployment>, beside the `prefect deploy` ones of the same "
        "server (serve refuses to replace those).",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted (Ctrl-C); 2 when prefect.yaml cannot be served as written, or when the
    server holds worker deployments of the same names."""
    from prefect import serve

    args = _parse_args(argv)
    project_dir = args.project_dir.resolve()
    # Flow files import `tasks` and `ods` as packages from the project root, as a worker's checkout does.
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    try:
        runner_deployments = build_runner_deployments(project_dir, args.only, args.prefix)
        with prefect_api() as (read, _):
            refuse_worker_deployments(runner_deployments, read)
    except DeploymentSpecError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 - a CLI's error line
        return 2
    # A shell starts a background job (`python -m deployments.serve &`) with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: `kill -INT` would not stop it. Ctrl-C semantics always.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # Prefect's own pause on shutdown is skipped by a Ctrl-C (its loop is cancelled first) and would
        # pause whatever carries the served names: serve pauses its own below instead.
        serve(*runner_deployments, limit=args.limit, pause_on_shutdown=False)
    except KeyboardInterrupt:  # Ctrl-C while deployments were still being registered: a stop all the same
        print("interrupted while registering deployments; stopped", file=sys.stderr)  # noqa: T201
    try:
        with prefect_api() as (read, pause):
            paused = pause_served_deployments(runner_deployments, read, pause)
    except (DeploymentSpecError, KeyboardInterrupt) as error:
        print(f"warning: the served deployments were not paused: {error}", file=sys.stderr)  # noqa: T201
        return 0
    print(f"paused {len(paused)} served deployment(s): {', '.join(paused) or 'none'}", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
