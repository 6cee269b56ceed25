"""The settings of `ods serve`'s HTTP side: the API (``ODS_API__*``, with its webhooks), who may call it
besides API keys (``ODS_AUTH__*``) and its audit log (``ODS_AUDIT__*``); importable from ``ods.settings``."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class WebhookSettings(BaseModel):
    """How `ods serve` delivers webhooks: retries, expiry, timeouts and which private targets it may reach."""

    retry_base_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds before the first retry of a failed delivery; each later retry waits twice as long "
        "as the one before, up to retry_max_s.",
    )
    retry_max_s: float = Field(
        default=3600.0,
        gt=0,
        le=86400,
        description="Longest wait between two attempts of a delivery, in seconds.",
    )
    expire_s: float = Field(
        default=86400.0,
        gt=0,
        le=30 * 86400,
        description="Seconds a delivery is retried after its event (default 24 h): a receiver down for less "
        "loses nothing; after it the delivery is marked expired.",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Seconds one attempt may take.")
    poll_s: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="Seconds between two looks of the dispatcher at the event outbox and the due deliveries.",
    )
    keep_log_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Seconds events and their delivery log are kept once no delivery of them is pending.",
    )
    allowed_targets: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR, e.g. 10.20.0.0/16) or addresses that webhooks may reach on the cluster "
        "profile although they are private, loopback or link-local (refused there otherwise, against SSRF); "
        "the local profile allows every target.",
    )

    @field_validator("allowed_targets")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a network or address; give e.g. 10.20.0.0/16") from None
        return value


class ApiSettings(BaseModel):
    """The HTTP API that `ods serve` runs (the platform's datasets, knowledge bases, models and an
    OpenAI-compatible gateway)."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address `ods serve` binds when --host names none. An address other machines can reach "
        "(e.g. 0.0.0.0) is accepted only while an active API key exists (`ods keys create`).",
    )
    port: int = Field(default=8700, ge=1, le=65535, description="TCP port `ods serve` listens on.")
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body, in bytes (default 1 MiB); a larger one is refused with HTTP 413 "
        "before it is parsed.",
    )
    max_upload_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1,
        le=1024 * 1024 * 1024,
        description="Largest document uploaded to a knowledge base (POST …/knowledge-bases/{kb}/documents), in "
        "bytes (default 32 MiB); a larger one is refused with code 40001. Uploads are limited by this, not by "
        "max_body_bytes.",
    )
    ready_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds /readyz reuses its last health checks (they write a probe object and open "
        "Milvus), so a probe every second costs one check every few seconds.",
    )
    rate_limit_inference: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="Requests per minute one API key (or one client address, without a key) may make to the "
        "inference routes (/v1/chat/completions, /v1/completions, /v1/embeddings, /api/v1/ask); 0: no limit. "
        "Counted per server process over the last 60 s.",
    )
    rate_limit_query: int = Field(
        default=60,
        ge=0,
        le=1_000_000,
        description="Requests per minute one API key (or client address) may make to /api/v1/query/*; 0: no "
        "limit.",
    )
    rate_limit_metadata: int = Field(
        default=200,
        ge=0,
        le=1_000_000,
        description="Requests per minute one API key (or client address) may make to every other route under "
        "/api/v1 and /v1; 0: no limit.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Secret that signs the expiring download URLs `POST /api/v1/datasets/{name}/credentials` "
        "hands out on a local object store (HMAC-SHA256; at least 32 characters). Unset: a random key made "
        "when the server starts, so its URLs stop working when it restarts; set it to share URLs across "
        "restarts or replicas.",
    )
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings,
        description="Webhook deliveries (ODS_API__WEBHOOKS__*).",
    )
    runs: Literal["auto", "server", "prefect"] = Field(
        default="auto",
        description="Where a dataset registration, a deploy and an undeploy asked of the API run: 'server' in "
        "`ods serve`'s background; 'prefect' as a flow run of prefect.yaml's deployment (prepare-dataset, "
        "deploy-model[-cpu], undeploy-model) on the Prefect server of PREFECT_API_URL, refused with the fix "
        "when it is missing; 'auto' (default) as a flow run when PREFECT_API_URL is set and the deployment "
        "exists, else in the server. Ingests after an upload always run in the server.",
    )


class AuthSettings(BaseModel):
    """Who may call `ods serve` besides API keys: bearer tokens of one OpenID Connect issuer (Keycloak or any
    other), and where their claims carry roles and the tenant (docs/security.md)."""

    issuer: str | None = Field(
        default=None,
        description="Issuer URL of the OpenID provider, exactly as its tokens' 'iss' says (e.g. "
        "https://sso.example.com/realms/ods); its discovery document and keys are fetched from it. Unset: no "
        "tokens, API keys only.",
    )
    audience: str | None = Field(
        default=None,
        description="The 'aud' every token must hold (the API's client id or resource); needed with an issuer.",
    )
    client_id: str | None = Field(
        default=None,
        description="The client whose roles resource_access.{client}.roles holds (default: the audience).",
    )
    roles_claims: list[str] = Field(
        default_factory=lambda: ["realm_access.roles", "resource_access.{client}.roles"],
        description="Dotted claim paths whose lists of strings are the caller's roles (Keycloak's layout by "
        "default); '{client}' stands for client_id. Roles the platform does not know are ignored.",
    )
    tenant_claim: str = Field(
        default="tenant", min_length=1, description="Dotted claim path of the caller's tenant."
    )
    default_tenant: str | None = Field(
        default=None,
        description="Tenant of a token without the tenant claim; unset: such tokens are refused.",
    )
    leeway_s: int = Field(
        default=30, ge=0, le=300, description="Seconds of clock skew allowed on exp, nbf and iat."
    )
    jwks_cache_s: float = Field(
        default=3600.0, gt=0, le=86_400, description="Seconds the issuer's key set is kept before a refetch."
    )
    jwks_min_refetch_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Least seconds between two fetches of the key set: a token with an unknown 'kid' refetches "
        "it at most this often.",
    )

    console_client_id: str | None = Field(
        default=None,
        description="Client the web console signs browsers in with (authorization code + PKCE S256; Keycloak: "
        "the public client 'ods-console'). Unset: no browser login, bearer tokens and API keys only.",
    )
    console_client_secret: SecretStr | None = Field(
        default=None,
        description="Secret of console_client_id when it is a confidential client; unset for a public one. "
        "Never logged.",
    )
    public_url: str | None = Field(
        default=None,
        description="The console's URL as browsers reach it (e.g. https://ods.example.com); the provider "
        "sends them back to {public_url}/auth/callback. Unset: the scheme and host of the request.",
    )
    scopes: str = Field(
        default="openid profile email",
        description="Scopes the console's login asks for, space-separated; must include 'openid'.",
    )
    session_s: int = Field(
        default=12 * 3600,
        ge=60,
        le=30 * 86_400,
        description="Seconds a console session lasts at most (default 12 h); it ends sooner when the "
        "provider refuses to refresh its tokens.",
    )
    refresh_margin_s: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="A session's access token is refreshed when it expires within this many seconds.",
    )
    secure_cookies: bool = Field(
        default=False,
        description="Mark the session cookie Secure on every answer (behind a proxy that ends TLS); it is "
        "Secure anyway when the request came over https.",
    )

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError(f"scopes must include 'openid' (OpenID Connect login), got {value!r}")
        return " ".join(value.split())

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"public_url must be an http(s):// URL, got {value!r}")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _issuer_needs_audience(self) -> AuthSettings:
        if self.issuer is not None:
            if self.audience is None:
                raise ValueError("ODS_AUTH__ISSUER needs ODS_AUTH__AUDIENCE (the 'aud' tokens must hold)")
            scheme, _, rest = self.issuer.partition("://")
            host = rest.partition("/")[0].rpartition(":")[0] or rest.partition("/")[0]
            local = host in ("localhost", "127.0.0.1", "[::1]")
            if scheme != "https" and not (scheme == "http" and local):
                raise ValueError(
                    f"ODS_AUTH__ISSUER must be an https:// URL (http:// only on loopback), got {scheme!r}"
                )
        elif self.console_client_id is not None:
            raise ValueError(
                "ODS_AUTH__CONSOLE_CLIENT_ID needs ODS_AUTH__ISSUER (the provider to sign in at)"
            )
        return self

    @property
    def role_claim_paths(self) -> list[str]:
        """``roles_claims`` with ``{client}`` filled in."""
        client = self.client_id or self.audience or ""
        return [path.replace("{client}", client) for path in self.roles_claims]


class AuditSettings(BaseModel):
    """The audit log of `ods serve` (docs/security.md, "Audit")."""

    questions: Literal["keep", "hash"] = Field(
        default="hash",
        description="How a question asked (ask, chat on kb:/sql: models) is kept in the audit log: 'hash' (its "
        "SHA-256 only: who asked and when, not what) or 'keep' (the text, up to 2,000 characters).",
    )
    retention_days: int = Field(
        default=365, ge=1, le=36_500, description="Days an audit row is kept; older rows go at server start."
    )
    login_interval_s: int = Field(
        default=900,
        ge=0,
        le=86_400,
        description="A successful key or token authentication is logged as a login at most once per caller "
        "in this many seconds (0: every authenticated request).",
    )
