"""The permission matrix as callers meet it: every route of `ods serve` tried with a service account of
every role, each answered as ``ods.domain.permissions`` says (403 and code 40301 when refused, the route's
own answer when allowed).

One real server (uvicorn, loopback) over an empty local platform; one API key per role. Requests name
things that do not exist or send an empty body, so an allowed call ends in the route's own 400 or 404
and no model is loaded: what is asserted is only whether authorisation let it through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from ods.api.authorization import ROUTE_PERMISSIONS
from ods.domain.identity import ROLES
from ods.domain.permissions import OBSERVE, PUBLIC, is_allowed
from ods.factories import open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_server import RunningApi, running_api

# Values for the path parameters: names of nothing, so allowed calls stop at 404 or 400.
_PARAMETERS = {
    "name": "nope",
    "name:path": "nope/deeper",
    "version": "1",
    "kb": "nope",
    "kb:path": "nope/deeper",
    "document_id": "1",
    "db": "nope",
    "table": "nope",
    "conversation_id": "nope",
    "run_id": "nope",
    "webhook_id": "1",
    "schedule_id": "00000000-0000-0000-0000-000000000000",
    "trigger_id": "00000000-0000-0000-0000-000000000000",
    "chunk_id": "0f",
}
CHECKED = sorted(key for key, permission in ROUTE_PERMISSIONS.items() if permission not in (PUBLIC, OBSERVE))


@pytest.fixture(scope="module")
def role_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningApi, dict[str, str]]]:
    settings = load_settings(home=tmp_path_factory.mktemp("roles") / "ods-home")
    with open_catalog(settings) as catalog:
        keys = {
            role: create_api_key(catalog, role.replace("_", "-"), roles=[role], tenant="default").key
            for role in ROLES
        }
        keys["none"] = create_api_key(catalog, "other-tenant", roles=["app_user"], tenant="acme").key
    with running_api(settings) as api:
        yield api, keys


def _call(client: httpx.Client, route: str, key: str) -> httpx.Response:
    method, template = route.split(" ", 1)
    path = re.sub(r"\{([^}]+)\}", lambda match: _PARAMETERS[match.group(1)], template)
    body = {} if method in ("POST", "PUT") else None
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("route", CHECKED)
def test_every_role_is_allowed_or_refused_as_the_matrix_says(
    role_keys: tuple[RunningApi, dict[str, str]], route: str
) -> None:
    api, keys = role_keys
    permission = ROUTE_PERMISSIONS[route]
    allowed = [role for role in ROLES if is_allowed({role}, permission)]
    refused = [role for role in ROLES if not is_allowed({role}, permission)]
    assert allowed and refused, f"{permission}: each cell needs an allowed and a refused role to try"
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        for role in ROLES:
            answer = _call(client, route, keys[role])
            if role in allowed:
                assert answer.status_code in (200, 400, 404), f"{role} refused {route}: {answer.text}"
            else:
                assert answer.status_code == 403, f"{role} let through {route}: {answer.text}"
                body = answer.json()
                if route.split(" ", 1)[1].startswith("/v1/"):
                    assert body["error"]["code"] == "permission_denied"
                    message = body["error"]["message"]
                else:
                    assert body["code"] == 40301 and body["request_id"] == answer.headers["x-request-id"]
                    message = body["message"]
                assert f"{permission} needs one of the roles" in message and f"holds: {role}" in message
                assert keys[role] not in answer.text


def test_observe_and_public_routes_need_no_role(role_keys: tuple[RunningApi, dict[str, str]]) -> None:
    api, keys = role_keys
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        assert client.get("/healthz").status_code == 200
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {keys['app_user']}"}).status_code == 200
        )
        assert client.get("/metrics").status_code == 200  # loopback: open, as before roles
        # Keys exist, so the keyless loopback caller is no longer a local administrator.
        refused = client.get("/api/v1/datasets")
        assert refused.status_code == 401 and refused.json()["code"] == 40101


def test_a_key_of_one_tenant_cannot_claim_another(role_keys: tuple[RunningApi, dict[str, str]]) -> None:
    api, keys = role_keys
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        own = client.get(
            "/api/v1/knowledge-bases",
            headers={"Authorization": f"Bearer {keys['none']}", "X-Tenant-ID": "acme"},
        )
        other = client.get(
            "/api/v1/knowledge-bases",
            headers={"Authorization": f"Bearer {keys['none']}", "X-Tenant-ID": "default"},
        )
    assert own.status_code == 200
    assert other.status_code == 401 and other.json()["code"] == 40101
    assert (
        other.json()["message"] == "X-Tenant-ID names 'default' but these credentials belong to tenant 'acme'"
    )
