"""A real OpenID provider on loopback for the token tests: node's ``oidc-provider`` (tests/support/oidc/).

``OidcProvider.start(...)`` installs the pinned package (``npm ci``, once per checkout) when it is missing,
then runs ``provider.mjs`` on a free loopback port with a key set this module makes: the tests hold the
provider's private key, so they can also sign the attack tokens a provider never issues (expired, wrong
issuer, wrong audience) with the very key the server trusts, and sign others with a key it does not hold.

Each client of the provider stands for one user of the seed's roles: its client-credentials token carries
the roles in Keycloak's layout (``realm_access.roles``, ``resource_access.<audience>.roles``) and a
``tenant`` claim. With ``users``, the provider also serves the console's browser login: the public client
``ods-console`` (code + PKCE, any loopback port) and its own login form, where the login names the user
and any password passes (:func:`sign_in` drives it with plain HTTP). Without node the tests are skipped with the reason, or fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from joserfc.jwk import RSAKey

from ods.adapters.workers.processes import free_port

PROVIDER_DIR = Path(__file__).parent / "oidc"
AUDIENCE = "https://api.ods.test"
"""The API's resource indicator: the ``aud`` of its tokens (oidc-provider wants an absolute URI)."""
API_CLIENT = "ods-api"
"""The client whose roles ``resource_access.<client>.roles`` holds (Keycloak's per-client roles)."""
CONSOLE_CLIENT = "ods-console"
"""The console's public client for the browser login (code + PKCE), when ``users`` are given."""


@dataclass(frozen=True)
class ProviderClient:
    """A client-credentials client standing for a user: its tenant and roles."""

    client_id: str
    tenant: str | None = None
    realm_roles: tuple[str, ...] = ()
    client_roles: tuple[str, ...] = ()

    @property
    def secret(self) -> str:
        return f"secret-of-{self.client_id}"


@dataclass(frozen=True)
class ProviderUser:
    """A person who signs in through the provider's login form (any password): tenant and roles."""

    user_id: str
    tenant: str | None = None
    realm_roles: tuple[str, ...] = ()
    client_roles: tuple[str, ...] = ()
    name: str | None = None


def new_signing_key(kid: str) -> RSAKey:
    """An RSA key for RS256 with ``kid`` (2048 bits: what providers use)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


def _install() -> None:
    if (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    assert npm is not None
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROVIDER_DIR, check=True)


def require_node() -> str:
    """The ``node`` executable; skips (fails under CI=true) without node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "the token tests need node 20 and npm on PATH (tests/support/oidc runs oidc-provider)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


@dataclass
class OidcProvider:
    """A running provider: its issuer URL, the keys it signs with (private) and its clients."""

    issuer: str
    port: int
    keys: list[RSAKey]
    clients: dict[str, ProviderClient]
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        folder: Path,
        clients: Sequence[ProviderClient],
        keys: Sequence[RSAKey],
        *,
        port: int | None = None,
        users: Sequence[ProviderUser] = (),
        access_ttl: int | None = None,
    ) -> OidcProvider:
        node = require_node()
        _install()
        chosen = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "port": chosen,
            "audience": AUDIENCE,
            "api_client": API_CLIENT,
            "jwks": {"keys": [key.as_dict(private=True) for key in keys]},
            "clients": [
                {
                    "client_id": client.client_id,
                    "client_secret": client.secret,
                    "tenant": client.tenant,
                    "realm_roles": list(client.realm_roles),
                    "client_roles": list(client.client_roles),
                }
                for client in clients
            ],
        }
        if users:
            config["users"] = [
                {
                    "id": user.user_id,
                    "name": user.name or user.user_id,
                    "tenant": user.tenant,
                    "realm_roles": list(user.realm_roles),
                    "client_roles": list(user.client_roles),
                }
                for user in users
            ]
            config["login_client"] = {
                "client_id": CONSOLE_CLIENT,
                "redirect_uris": ["http://127.0.0.1/auth/callback"],
                "post_logout_redirect_uris": ["http://127.0.0.1/auth/sign-in"],
            }
        if access_ttl is not None:
            config["access_ttl"] = access_ttl
        config_file = folder / f"provider-{chosen}.json"
        config_file.write_text(json.dumps(config))
        log = (folder / f"provider-{chosen}.log").open("wb")
        process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "test"},
        )
        provider = cls(
            issuer=f"http://127.0.0.1:{chosen}",
            port=chosen,
            keys=list(keys),
            clients={client.client_id: client for client in clients},
            folder=folder,
            process=process,
        )
        provider._wait_ready()
        return provider

    def _wait_ready(self) -> None:
        url = f"{self.issuer}/.well-known/openid-configuration"
        while True:  # pytest-timeout ends a provider that never answers
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.folder / f"provider-{self.port}.log").read_text(errors="replace")
                raise RuntimeError(f"oidc-provider exited with {self.process.returncode}: {log[-2000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def token(self, client_id: str) -> str:
        """A JWT access token for ``client_id`` by the client-credentials grant, for the API's audience."""
        client = self.clients[client_id]
        answer = httpx.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.secret,
                "resource": AUDIENCE,
                "scope": "api",
            },
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def claims_template(self) -> dict[str, Any]:
        """Claims of a valid token for this provider (for tokens the tests sign themselves)."""
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "forged",
            "iat": now,
            "exp": now + 300,
            "tenant": "tenant-a",
            "realm_access": {"roles": ["super_admin"]},
        }


def console_auth(issuer: str) -> dict[str, str]:
    """The ``auth`` settings of an `ods serve` whose console signs browsers in through the provider at
    ``issuer`` (its ``users``): tokens for :data:`AUDIENCE`, roles of :data:`API_CLIENT`, the console's
    public client :data:`CONSOLE_CLIENT`."""
    return {
        "issuer": issuer,
        "audience": AUDIENCE,
        "client_id": API_CLIENT,
        "console_client_id": CONSOLE_CLIENT,
        "scopes": "openid profile api",
    }


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def sign_in(client: httpx.Client, login_url: str, user_id: str, *, stop_at: str) -> httpx.Response:
    """Drive a browser login by hand: GET ``login_url`` (the API's ``/auth/login``), follow each redirect,
    fill the provider's login form as ``user_id``, confirm its consent form (asked of every native client)
    and return the first redirect to a URL starting with
    ``stop_at`` (the API's callback) without following it, so a test can replay or alter it."""
    response = client.get(login_url)
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if target.startswith(stop_at):
                return response
            response = client.get(target)
        elif response.status_code == 200 and 'name="login"' in response.text:
            action = _FORM_ACTION.search(response.text)
            assert action is not None, response.text[:500]
            response = client.post(
                urljoin(str(response.url), action.group(1)),
                data={"prompt": "login", "login": user_id, "password": "any password"},
            )
        elif response.status_code == 200 and 'name="prompt" value="consent"' in response.text:
            action = _FORM_ACTION.search(response.text)
            assert action is not None, response.text[:500]
            response = client.post(urljoin(str(response.url), action.group(1)), data={"prompt": "consent"})
        else:
            raise AssertionError(
                f"login stopped at {response.url}: HTTP {response.status_code} {response.text[-3000:]}"
            )
    raise AssertionError("login did not reach the callback in 20 steps")
