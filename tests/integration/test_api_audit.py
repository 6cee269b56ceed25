"""The audit log of `ods serve`, as an administrator reads it after real requests.

A real server (uvicorn on a free loopback port) over the small sample platform (the policy documents in
a knowledge base, the sales dataset), its catalog on SQLite and on PostgreSQL; callers are API keys
(service accounts) of different roles and tenants. Each kind of audited request (a state change, a
refusal, a SQL execution, a question, a login) must leave one row with the right fields, the list route
must filter, page and scope a tenant admin to its tenant, and no row may hold a key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from ods.adapters.catalog.audit import AuditEntryRecord, AuditFilter
from ods.adapters.catalog.schema import utcnow
from ods.factories import open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from ods.stages.audit import list_audit, parse_since, prune_audit
from tests.support.api_envelope import data
from tests.support.api_server import DATASET, KB, RunningApi, running_api, served_platform
from tests.support.cli import run_ods
from tests.support.oidc_provider import API_CLIENT, AUDIENCE, OidcProvider, ProviderClient, new_signing_key
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
QUESTION = "How long do customers have to return a product?"
SQL = "SELECT COUNT(*) AS n FROM sales"  # DATASET
ROLES = {
    "admin": ("super_admin", "default"),
    "acme-admin": ("tenant_admin", "acme"),
    "analyst": ("data_analyst", "default"),
    "acme-analyst": ("data_analyst", "acme"),
    "app": ("app_user", "default"),
}


class Platform:
    """The running server, a client, and the keys of its callers by name."""

    def __init__(self, api: RunningApi, client: httpx.Client, keys: dict[str, str]) -> None:
        self.api, self.client, self.keys = api, client, keys

    def call(self, caller: str, method: str, path: str, **options: Any) -> httpx.Response:
        return self.client.request(
            method, path, headers={"Authorization": f"Bearer {self.keys[caller]}"}, **options
        )

    def audit(self, caller: str = "admin", **filters: Any) -> dict[str, Any]:
        response = self.call(caller, "GET", "/api/v1/audit", params=filters)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = data(response)
        return page

    def rows(self, **filters: Any) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.audit(limit=500, **filters)["entries"]
        return entries


@pytest.fixture(scope="module", params=BACKENDS)
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp(f"api-audit-{request.param}")
    if request.param == "postgres":
        with temporary_database() as url, served_platform(root, catalog={"url": url}) as api:
            yield _platform(api)
    else:
        with served_platform(root) as api:
            yield _platform(api)


def _platform(api: RunningApi) -> Platform:
    with open_catalog(api.settings) as catalog:
        keys = {
            name: create_api_key(catalog, name, roles=(role,), tenant=tenant).key
            for name, (role, tenant) in ROLES.items()
        }
    client = httpx.Client(base_url=api.base_url, timeout=120)
    return Platform(api, client, keys)


def only(rows: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The one row whose fields equal ``fields``."""
    found = [row for row in rows if all(row[name] == value for name, value in fields.items())]
    assert len(found) == 1, f"expected one row with {fields}, found {len(found)}: {found}"
    return found[0]


def test_each_audited_request_leaves_one_row_with_its_fields(platform: Platform) -> None:
    created = platform.call(
        "admin",
        "POST",
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/x", "events": ["dataset.created"]},
    )
    refused = platform.call("acme-analyst", "GET", "/api/v1/webhooks")
    unknown = platform.client.get("/api/v1/datasets", headers={"Authorization": "Bearer ods_not_a_real_key"})
    ran = platform.call("analyst", "POST", "/api/v1/query/execute", json={"sql": SQL, "datasets": [DATASET]})
    asked = platform.call("app", "POST", "/api/v1/ask", json={"question": QUESTION, "kb": KB})
    read = platform.call("analyst", "GET", "/api/v1/datasets")
    assert (created.status_code, refused.status_code, unknown.status_code) == (201, 403, 401)
    assert (ran.status_code, asked.status_code, read.status_code) == (200, 200, 200)

    rows = platform.rows()
    change = only(rows, request_id=created.headers["x-request-id"], action="webhooks.manage")
    assert change | {"at": None, "id": None} == {
        "at": None,
        "id": None,
        "tenant": "default",
        "subject": "admin",
        "roles": ["super_admin"],
        "action": "webhooks.manage",
        "resource": "/api/v1/webhooks",
        "outcome": "allowed",
        "status_code": 201,
        "request_id": created.headers["x-request-id"],
        "client": "127.0.0.1",
        "detail": None,
    }
    forbidden = only(rows, request_id=refused.headers["x-request-id"], action="webhooks.manage")
    refusal = (forbidden["outcome"], forbidden["status_code"], forbidden["subject"])
    assert refusal == ("refused", 403, "acme-analyst")
    assert (forbidden["tenant"], forbidden["roles"]) == ("acme", ["data_analyst"])
    assert "webhooks.manage needs one of the roles" in forbidden["detail"]
    anonymous = only(rows, request_id=unknown.headers["x-request-id"])
    assert (anonymous["outcome"], anonymous["status_code"], anonymous["subject"]) == ("refused", 401, None)
    assert (anonymous["action"], anonymous["resource"]) == ("datasets.view", "/api/v1/datasets")
    assert "not recognised" in anonymous["detail"]
    sql = only(rows, request_id=ran.headers["x-request-id"], action="query.execute")
    assert (sql["outcome"], sql["subject"], sql["detail"]) == ("allowed", "analyst", f"sql: {SQL}")
    question = only(rows, request_id=asked.headers["x-request-id"], action="chat.ask")
    assert question["subject"] == "app" and question["outcome"] == "allowed"
    assert question["detail"].startswith("question sha256:") and QUESTION not in question["detail"]
    # a read is not audited, but each caller's first request is its login (once per interval)
    assert [row for row in rows if row["request_id"] == read.headers["x-request-id"]] == []
    logins = {row["subject"] for row in rows if row["action"] == "auth.login"}
    assert logins >= {"admin", "analyst", "app"}
    assert len([row for row in rows if row["action"] == "auth.login" and row["subject"] == "analyst"]) == 1


def test_the_list_filters_pages_and_keeps_a_tenant_admin_to_its_tenant(platform: Platform) -> None:
    for _ in range(3):
        platform.call("analyst", "POST", "/api/v1/query/validate", json={"sql": SQL, "datasets": [DATASET]})
    validations = platform.rows(action="query.validate", subject="analyst")
    assert len(validations) >= 3 and {row["outcome"] for row in validations} == {"allowed"}

    first = platform.audit(action="query.validate", limit=2)
    second = platform.audit(action="query.validate", limit=2, offset=first["next_offset"])
    assert len(first["entries"]) == 2 and first["next_offset"] == 2
    assert {row["id"] for row in first["entries"]}.isdisjoint(row["id"] for row in second["entries"])
    assert [row["id"] for row in first["entries"]] == sorted(
        (row["id"] for row in first["entries"]), reverse=True
    )

    assert {row["outcome"] for row in platform.rows(outcome="refused")} == {"refused"}
    assert all(row["resource"].startswith("/api/v1/query") for row in platform.rows(resource="/api/v1/query"))
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert platform.rows(since=future) == []
    assert platform.rows(until=future) != []

    tenant_view = platform.audit("acme-admin", limit=500)["entries"]
    assert tenant_view and {row["tenant"] for row in tenant_view} == {"acme"}
    assert {row["tenant"] for row in platform.audit("acme-admin", tenant="default")["entries"]} <= {"acme"}

    refused = platform.call("analyst", "GET", "/api/v1/audit")
    assert refused.status_code == 403
    assert only(platform.rows(), request_id=refused.headers["x-request-id"])["action"] == "audit.view"
    bad = platform.call("admin", "GET", "/api/v1/audit", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["code"] == 40001


def test_no_key_is_written_to_any_row(platform: Platform) -> None:
    platform.call("app", "POST", "/v1/chat/completions", json={"model": f"kb:{KB}", "messages": [
        {"role": "user", "content": QUESTION}]})  # fmt: skip
    platform.client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {platform.keys['app']}x"})
    with open_catalog(platform.api.settings) as catalog:
        platform.audit()  # the queued rows are written first
        stored = list_audit(catalog, AuditFilter(), limit=500).entries
    text = json.dumps([asdict(row) for row in stored], default=str)
    assert stored and all(key not in text and key[:20] not in text for key in platform.keys.values())
    chat = [row for row in stored if row.resource == "/v1/chat/completions"]
    assert (
        chat and chat[0].action == "models.invoke" and (chat[0].detail or "").startswith("question sha256:")
    )


def test_ods_audit_list_reads_the_rows(platform: Platform) -> None:
    if platform.api.settings.catalog.url is not None:
        pytest.skip("the CLI is checked once, on the SQLite catalog")
    platform.audit()  # the queued rows are written first
    home = str(platform.api.settings.home)
    listed = run_ods(
        "audit", "list", "--subject", "analyst", "--since", "1h", "--limit", "5", env={"ODS_HOME": home}
    )
    assert listed.returncode == 0, listed.stderr
    assert "5 audit row(s)" in listed.stdout and "analyst" in listed.stdout
    bad = run_ods("audit", "list", "--since", "yesterday", env={"ODS_HOME": home})
    assert bad.returncode != 0 and "--since 'yesterday' is not a time" in bad.stderr + bad.stdout


def test_retention_prunes_only_old_rows(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "ods-home")
    now = utcnow()
    with open_catalog(settings) as catalog:
        catalog.append_audit_entries(
            [
                AuditEntryRecord(at=now - timedelta(days=age), tenant="default", subject="s", roles=(),
                                 action="datasets.create", resource="/api/v1/datasets", outcome="allowed")
                for age in (400, 366, 10, 0)
            ]
        )  # fmt: skip
        assert prune_audit(catalog, 365, now=now) == 2
        assert prune_audit(catalog, 365, now=now) == 0
        kept = list_audit(catalog, AuditFilter(), limit=10).entries
    assert sorted((now - row.at).days for row in kept) == [0, 10]
    assert parse_since("7d", now=now) == now - timedelta(days=7)


def test_tokens_log_in_once_and_their_refusals_are_rows_without_the_token(tmp_path: Path) -> None:
    """A real OpenID provider: a valid token's first request is its login, an expired or wrong-audience
    token is a refused row with the reason, and no row holds any part of a token."""
    provider = OidcProvider.start(
        tmp_path / "provider",
        [ProviderClient("analyst-a", tenant="tenant-a", realm_roles=("data_analyst",))],
        [new_signing_key("key-a")],
    )
    try:
        settings = load_settings(
            home=tmp_path / "ods-home",
            auth={"issuer": provider.issuer, "audience": AUDIENCE, "client_id": API_CLIENT},
        )
        with running_api(settings) as api, httpx.Client(base_url=api.base_url, timeout=60) as client:
            valid = provider.token("analyst-a")
            key = provider.keys[0]
            expired = jwt.encode(
                {"alg": "RS256", "kid": key.kid},
                provider.claims_template() | {"exp": int(time.time()) - 3600},
                key,
            )
            foreign = jwt.encode(
                {"alg": "RS256", "kid": key.kid}, provider.claims_template() | {"aud": "another-api"}, key
            )
            answers = [
                client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"})
                for token in (valid, valid, expired, foreign)
            ]
            assert [answer.status_code for answer in answers] == [200, 200, 401, 401]
            with open_catalog(settings) as catalog:
                admin = create_api_key(catalog, "admin", roles=("super_admin",)).key
            page = data(
                client.get(
                    "/api/v1/audit", params={"limit": 500}, headers={"Authorization": f"Bearer {admin}"}
                )
            )
        rows = page["entries"]
        logins = [row for row in rows if row["action"] == "auth.login" and row["detail"] == "by token"]
        assert [(row["subject"], row["tenant"], row["roles"]) for row in logins] == [
            ("analyst-a", "tenant-a", ["data_analyst"])
        ]
        refused = [row for row in rows if row["outcome"] == "refused"]
        assert [row["request_id"] for row in refused] == [
            answer.headers["x-request-id"] for answer in reversed(answers[2:])
        ]
        assert all(row["status_code"] == 401 and row["subject"] is None for row in refused)
        assert "expired" in refused[1]["detail"] and "aud" in refused[0]["detail"]
        text = json.dumps(rows)
        for token in (valid, expired, foreign):
            assert all(len(part) < 8 or part not in text for part in token.split("."))
        assert admin not in text
    finally:
        provider.stop()
