"""API keys and rate limits of `ods serve`, as a client and an administrator meet them.

Real servers (uvicorn on a free loopback port) over an empty local platform (SQLite catalog): no model is
loaded, the routes used answer from the catalog. Keys are made by `ods keys` (a real process) or the stage
it calls; the catalog side and migration 0005 run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from ods.adapters.catalog import Catalog, create_catalog_engine, current_revision, head_revision, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.schema import utcnow
from ods.api.server import check_bind, check_bind_address
from ods.domain.api_keys import ApiKeyExistsError, ApiKeyRefused
from ods.errors import NotFoundError, OdsError
from ods.factories import open_catalog
from ods.settings import Settings, load_settings
from ods.stages.api_keys import authenticate_api_key, create_api_key
from tests.support.api_server import RunningApi, running_api
from tests.support.cli import run_ods
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
EVERY_INTERFACE = "0.0.0." + "0"  # what a user types to publish a server (the point of the tests)


def settings_in(home: Path, **api: object) -> Settings:
    return load_settings(home=home, api=api)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(settings: Settings, name: str, **options: object) -> str:
    with open_catalog(settings) as catalog:
        options.setdefault("roles", ("super_admin",))
        return create_api_key(catalog, name, **options).key  # type: ignore[arg-type]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(settings_in(tmp_path / "ods-home")) as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=60) as session:
        yield session


def test_loopback_needs_no_key_until_one_exists_then_every_route_does(
    api: RunningApi, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before = client.get("/api/v1/datasets")
    placeholder = client.get("/api/v1/datasets", headers=bearer("unused"))  # the openai client's habit
    key = make_key(api.settings, "ci")

    missing = client.get("/api/v1/datasets")
    wrong = client.get("/api/v1/datasets", headers=bearer("unused"))
    forged = client.get(
        "/api/v1/datasets", headers=bearer(key[:-4] + ("AAAA" if key[-4:] != "AAAA" else "BBBB"))
    )
    openai_route = client.get("/v1/models")
    valid = client.get("/api/v1/datasets", headers=bearer(key))

    assert before.status_code == placeholder.status_code == 200
    for response in (missing, wrong, forged):
        body = response.json()
        assert response.status_code == 401 and body["code"] == 40101, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert body["request_id"] == response.headers["x-request-id"]
    assert "needs an API key" in missing.json()["message"] and "ods keys create" in missing.json()["message"]
    assert "not recognised" in forged.json()["message"]
    assert openai_route.status_code == 401
    assert openai_route.json()["error"]["code"] == "invalid_api_key"
    assert valid.status_code == 200 and valid.json()["data"]["total"] == 0
    # Health stays open; readiness, metrics and the schema stay open to this machine.
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in schema["paths"]["/api/v1/datasets"]["get"]["responses"]
    assert "429" in schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert key not in caplog.text and key[4:] not in forged.text + caplog.text


def test_revoked_and_expired_keys_are_refused_at_once(api: RunningApi, client: httpx.Client) -> None:
    key = make_key(api.settings, "laptop")
    expired = make_key(api.settings, "old", expires="1m", now=utcnow() - timedelta(hours=1))
    assert client.get("/api/v1/datasets", headers=bearer(key)).status_code == 200

    with open_catalog(api.settings) as catalog:
        catalog.revoke_api_key("laptop")
    revoked = client.get("/api/v1/datasets", headers=bearer(key))
    too_old = client.get("/api/v1/datasets", headers=bearer(expired))

    assert revoked.status_code == 401 and revoked.json()["code"] == 40101
    assert "API key 'laptop' was revoked at" in revoked.json()["message"]
    assert too_old.status_code == 401 and "API key 'old' expired at" in too_old.json()["message"]
    for response in (revoked, too_old):
        assert key not in response.text and expired not in response.text
    # With no active key left, this machine may call without one again (the local profile's rule).
    assert client.get("/api/v1/datasets").status_code == 200


def test_keys_made_listed_and_revoked_with_the_cli_drive_the_openai_client(api: RunningApi) -> None:
    env = {"ODS_HOME": str(api.settings.home)}
    created = run_ods("keys", "create", "agent", "--role", "app_user", "--expires", "30d", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ods_") and len(key) == 47
    assert "not shown again" in created.stderr and key not in created.stderr

    client = openai.OpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    assert {model.id for model in client.models.list()} >= {"all-MiniLM-L6-v2"}
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=f"{api.base_url}/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert refused.value.code == "invalid_api_key"

    listed = run_ods("keys", "list", env=env)
    assert listed.returncode == 0 and "agent" in listed.stdout and key[:12] in listed.stdout
    assert "app_user" in listed.stdout and "default" in listed.stdout
    assert key not in listed.stdout and key[12:20] not in listed.stdout
    assert run_ods("keys", "revoke", "agent", env=env).returncode == 0
    with pytest.raises(openai.AuthenticationError, match="API key 'agent' was revoked"):
        client.models.list()

    duplicate = run_ods("keys", "create", "agent", "--role", "app_user", env=env)
    bad_expiry = run_ods("keys", "create", "other", "--role", "app_user", "--expires", "1y", env=env)
    no_role = run_ods("keys", "create", "other", env=env)
    bad_role = run_ods("keys", "create", "other", "--role", "wizard", env=env)
    bad_tenant = run_ods("keys", "create", "other", "--role", "app_user", "--tenant", "Acme Corp", env=env)
    assert no_role.returncode == 2 and "name at least one role (--role ROLE)" in no_role.stderr
    assert bad_role.returncode == 2 and "unknown role 'wizard'; roles: super_admin" in bad_role.stderr
    assert bad_tenant.returncode == 2 and "tenant 'Acme Corp' is not valid" in bad_tenant.stderr
    assert (
        duplicate.returncode == 2 and "an API key named 'agent' exists already (revoked)" in duplicate.stderr
    )
    assert bad_expiry.returncode == 2 and "key lifetime '1y' is not valid" in bad_expiry.stderr


def test_rate_limits_per_key_and_api_type_with_headers_and_429(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "ods-home", rate_limit_metadata=3, rate_limit_inference=2)
    first, second = make_key(settings, "first"), make_key(settings, "second")
    with running_api(settings) as api, httpx.Client(base_url=api.base_url, timeout=60) as client:
        allowed = [client.get("/api/v1/datasets", headers=bearer(first)) for _ in range(3)]
        limited = client.get("/api/v1/datasets", headers=bearer(first))
        limited_openai = client.get("/v1/models", headers=bearer(first))
        other_key = client.get("/api/v1/datasets", headers=bearer(second))
        chat = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
        inference = [client.post("/v1/chat/completions", json=chat, headers=bearer(first)) for _ in range(2)]
        with pytest.raises(openai.RateLimitError) as raised:
            openai.OpenAI(
                base_url=f"{api.base_url}/v1", api_key=first, max_retries=0
            ).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        unlimited = client.get("/healthz")

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    assert {r.headers["x-ratelimit-limit"] for r in allowed} == {"3"}
    assert all(0 < int(r.headers["x-ratelimit-reset"]) <= 60 for r in allowed)
    assert limited.status_code == 429 and limited.json()["code"] == 42901, limited.text
    assert "rate limit of 3 metadata requests per minute" in limited.json()["message"]
    assert limited.headers["x-ratelimit-remaining"] == "0" and int(limited.headers["retry-after"]) > 0
    assert limited.headers["x-request-id"]
    assert limited_openai.status_code == 429
    assert limited_openai.json()["error"] == {
        "message": limited_openai.json()["error"]["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert other_key.status_code == 200 and other_key.headers["x-ratelimit-remaining"] == "2"
    # Refused answers count too, and carry the headers: the limit is on requests, not successes.
    assert [r.status_code for r in inference] == [404, 404]
    assert [r.headers["x-ratelimit-remaining"] for r in inference] == ["1", "0"]
    assert raised.value.code == "rate_limit_exceeded"
    assert "x-ratelimit-limit" not in unlimited.headers


def test_a_reachable_address_is_served_only_once_a_key_exists(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "ods-home")
    for host in ("127.0.0.1", "::1", "localhost"):
        assert check_bind(host, active_keys=0) == host
    for host in (EVERY_INTERFACE, "192.168.1.10", "example.com", "::"):
        with pytest.raises(OdsError, match="without an API key"):
            check_bind(host, active_keys=0)
        assert check_bind(host, active_keys=1) == host

    refused = run_ods("serve", "--host", EVERY_INTERFACE, env={"ODS_HOME": str(settings.home)})
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith(f"error: refusing to serve the API on '{EVERY_INTERFACE}'")
    assert "ods keys create NAME" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    make_key(settings, "published")
    assert check_bind_address(settings, EVERY_INTERFACE) == EVERY_INTERFACE
    with open_catalog(settings) as catalog:
        catalog.revoke_api_key("published")
    with pytest.raises(OdsError, match="without an API key"):
        check_bind_address(settings, EVERY_INTERFACE)


# -- the catalog side, on both backends ---------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_catalog_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield engine
        engine.dispose()
        return
    with temporary_database("ods_test_keys_") as url:
        engine = create_catalog_engine(url)
        yield engine
        engine.dispose()


def test_migration_0005_adds_the_api_keys_table_and_takes_it_back(empty_engine: Engine) -> None:
    migrate(empty_engine)
    assert "api_keys" in inspect(empty_engine).get_table_names()
    indexes = {
        index["name"]: index["column_names"] for index in inspect(empty_engine).get_indexes("api_keys")
    }
    assert indexes.get("ix_api_keys_prefix") == ["prefix"]

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    assert "api_keys" not in inspect(empty_engine).get_table_names()
    assert current_revision(empty_engine) == "0004"

    assert migrate(empty_engine) == head_revision()
    assert "api_keys" in inspect(empty_engine).get_table_names()


def test_the_catalog_keeps_digests_and_refuses_what_it_should(empty_engine: Engine) -> None:
    catalog = Catalog(empty_engine)
    now = utcnow()
    created = create_api_key(
        catalog, "ci", roles=["data_viewer", "app_user"], tenant="acme", expires="12h", now=now
    )
    record = created.record

    assert record.key_hash != created.key and len(record.key_hash) == 64
    assert record.tenant == "acme" and record.roles == ("app_user", "data_viewer")
    assert record.prefix == created.key[:12] and record.expires_at == now + timedelta(hours=12)
    assert authenticate_api_key(catalog, created.key, now).name == "ci"
    assert catalog.list_api_keys()[0].last_used_at == now
    assert catalog.count_active_api_keys(now) == 1
    assert catalog.count_active_api_keys(now + timedelta(hours=13)) == 0
    with pytest.raises(ApiKeyExistsError, match="named 'ci' exists already"):
        create_api_key(catalog, "ci", roles=["app_user"])
    with pytest.raises(NotFoundError, match="no API key named 'cd'; known keys: ci"):
        catalog.revoke_api_key("cd")

    revoked = catalog.revoke_api_key("ci")
    assert catalog.revoke_api_key("ci").revoked_at == revoked.revoked_at  # revoking again changes nothing
    with pytest.raises(ApiKeyRefused, match="'ci' was revoked"):
        authenticate_api_key(catalog, created.key)
    assert catalog.count_active_api_keys(now) == 0


def test_migration_0010_makes_existing_keys_super_admins_of_the_default_tenant(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0009")
        connection.execute(
            text(
                "INSERT INTO api_keys (name, key_hash, prefix, created_at) "
                "VALUES ('old-ci', :digest, 'ods_AbCd1234', :now)"
            ),
            {"digest": "0" * 64, "now": utcnow()},
        )
    assert migrate(empty_engine) == head_revision()

    (record,) = Catalog(empty_engine).list_api_keys()
    assert (record.name, record.tenant, record.roles) == ("old-ci", "default", ("super_admin",))

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0009")
    assert {"tenant", "roles"}.isdisjoint(c["name"] for c in inspect(empty_engine).get_columns("api_keys"))
    migrate(empty_engine)
