"""The audit log of `ods serve`: one ASGI middleware writes a row for what the issue's "Audit" section asks.

A row is written for
- every state change: POST, PUT, PATCH and DELETE on ``/api/v1`` and ``/v1``, whatever the outcome;
- every refused request (401, 403, 429), on any route, with the refusal's one-line reason;
- every SQL execution and every question: the routes say what ran with :func:`note_sql` and
  :func:`note_question` (``query/execute``, ``ask``, chat on ``kb:``/``sql:`` models); the SQL text is kept,
  a question's text only with ODS_AUDIT__QUESTIONS=keep (by default its SHA-256);
- a login: the first request of an API key or token that authenticated, then at most once per caller per
  ODS_AUDIT__LOGIN_INTERVAL_S (a bearer API has no session to start: its "login" is a caller seen again).

``action`` is the permission of the route (``datasets.create``, ``query.execute``, ``chat.ask``; the
matrix of ``ods.domain.permissions``), ``auth.login`` for a login, ``http.<method>`` where no route
matched; ``resource`` the route template with its path parameters filled in (a signed download token
is never filled in). A row holds no header, token, key or body: only the principal (subject, tenant,
roles), the request id, the client address, and the short detail above.

Writes never slow or fail a request: the middleware queues the row once the answer is sent (before the
server takes the connection's next request) and one thread appends queued rows in batches. A write
that fails is logged and counted (``ods_audit_write_failures``) and the request keeps its answer: an
audit outage must not become an API outage. Reading the log (``GET /api/v1/audit``) first waits for the
queued rows, so a client reads its own requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ods.adapters.catalog.audit import AuditCatalog, AuditEntryRecord
from ods.adapters.catalog.schema import AuditOutcome, utcnow
from ods.api.authorization import ROUTE_PERMISSIONS, route_key
from ods.api.envelope import current_request_id
from ods.domain.identity import Principal
from ods.domain.object_keys import printable_text
from ods.settings import AuditSettings

logger = logging.getLogger(__name__)

STATE_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_PREFIXES: Final = ("/api/v1/", "/v1/")
REFUSED: Final = frozenset({401, 403, 429})
LOGIN: Final = "auth.login"
SECRET_PARAMS: Final = frozenset({"token"})
"""Path parameters never written (``/api/v1/downloads/{token}``: the token is the credential)."""
MAX_DETAIL_CHARS: Final = 2000
MAX_RESOURCE_CHARS: Final = 500
MAX_REASON_BYTES: Final = 8192
MAX_CALLERS: Final = 10_000
BATCH: Final = 200
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_SQL_KEY: Final = "audit_sql"
_QUESTION_KEY: Final = "audit_question"


def note_sql(request: Request, sql: str | None) -> None:
    """Record that ``sql`` ran for this request (its audit row keeps the text)."""
    if sql:
        state = request.scope.setdefault("state", {})
        state[_SQL_KEY] = [*state.get(_SQL_KEY, []), sql]


def note_question(request: Request, question: str) -> None:
    """Record that this request asked ``question`` (kept or hashed per ODS_AUDIT__QUESTIONS)."""
    request.scope.setdefault("state", {})[_QUESTION_KEY] = question


def question_detail(question: str, keep: bool) -> str:
    """A question as its audit row shows it: the text, or ``sha256:<hex>`` of it."""
    if keep:
        return "question: " + " ".join(question.split())
    return "question sha256:" + hashlib.sha256(question.encode("utf-8")).hexdigest()


def outcome_of(status: int) -> AuditOutcome:
    """``allowed`` below 400, ``refused`` for 401/403/429, ``failed`` otherwise."""
    if status < 400:
        return "allowed"
    return "refused" if status in REFUSED else "failed"


def fill_template(template: str, params: dict[str, Any]) -> str:
    """``template`` with each path parameter's value in place (secret ones left as ``{name}``)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in SECRET_PARAMS or name not in params:
            return "{" + name + "}"
        return str(params[name])

    return printable_text(_PARAM.sub(value, template))[:MAX_RESOURCE_CHARS]


class AuditWriter:
    """Appends queued audit rows to the catalog from one thread, in batches; never raises to a caller."""

    def __init__(
        self, catalog: Callable[[], AuditCatalog], registry: CollectorRegistry | None = None
    ) -> None:
        self._catalog = catalog
        self._queue: queue.Queue[AuditEntryRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures = Counter(
            "ods_audit_write_failures",
            "Audit rows the server could not write to the catalog (each is also logged).",
            registry=registry,
        )
        self.written = Counter(
            "ods_audit_rows_written", "Audit rows appended to the catalog.", registry=registry
        )

    def submit(self, entries: Iterable[AuditEntryRecord]) -> None:
        """Queue ``entries``; the writer thread appends them."""
        for entry in entries:
            self._queue.put(entry)
        self._ensure_started()

    def flush(self) -> None:
        """Wait until every row queued so far is written (or its failure logged)."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ods-api-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [entry for entry in batch if entry is not None]
            try:
                if entries:
                    self._catalog().append_audit_entries(entries)
                    self.written.inc(len(entries))
            except Exception as error:  # noqa: BLE001 - an audit outage is logged and counted, not raised
                self.failures.inc(len(entries))
                logger.error(
                    "audit: %d row(s) not written (%s: %s); requests %s",
                    len(entries),
                    type(error).__name__,
                    " ".join(str(error).split())[:300],
                    ", ".join(entry.request_id or "-" for entry in entries[:20]),
                )
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(entry is None for entry in batch):
                return


@dataclass
class _Answer:
    status: int = 500
    reason: bytearray = field(default_factory=bytearray)


class AuditTrail:
    """ASGI middleware between the request context (which set the request id) and ApiAccess (which sets
    the principal): queues the request's audit rows once its answer is sent (see the module's rules)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: AuditWriter,
        settings: AuditSettings,
        routes: Callable[[], list[BaseRoute]],
    ) -> None:
        self.app = app
        self.writer = writer
        self.keep_questions = settings.questions == "keep"
        self.login_interval_s = settings.login_interval_s
        self.routes = routes
        self._last_login: dict[str, float] = {}
        self._templates: list[tuple[frozenset[str], re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = _Answer()

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
            elif message["type"] == "http.response.body" and answer.status >= 400:
                room = MAX_REASON_BYTES - len(answer.reason)
                if room > 0:
                    answer.reason.extend(message.get("body", b"")[:room])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            try:
                self.writer.submit(self._entries(scope, answer))
            except Exception:  # never let the audit fail the request
                self.writer.failures.inc()
                logger.exception("audit: the row of request %s could not be made", current_request_id())

    def _entries(self, scope: Scope, answer: _Answer) -> list[AuditEntryRecord]:
        state: dict[str, Any] = scope.get("state", {})
        principal: Principal | None = state.get("principal")
        method: str = scope.get("method", "")
        path: str = scope.get("path", "")
        if path.startswith("/auth/"):
            return []  # the console's sign-in routes write their own login and logout rows (ods.api.login)
        status = answer.status
        notes = self._notes(state)
        changing = method in STATE_CHANGES and path.startswith(AUDITED_PREFIXES)
        login = principal is not None and status != 401 and self._is_login(principal)
        if not (login or changing or notes or status in REFUSED):
            return []
        action, resource = self._route(scope)
        client = scope.get("client")
        common: dict[str, Any] = {
            "at": utcnow(),
            "tenant": principal.tenant if principal else None,
            "subject": principal.subject if principal else None,
            "roles": tuple(sorted(principal.roles)) if principal else (),
            "resource": resource,
            "request_id": current_request_id() or None,
            "client": str(client[0])[:100] if client else None,
            "status_code": status,
        }
        entries = []
        if login and principal is not None:
            entries.append(
                AuditEntryRecord(action=LOGIN, outcome="allowed", detail=f"by {principal.kind}", **common)
            )
        if changing or notes or status in REFUSED:
            if status >= 400:
                notes = [_reason(bytes(answer.reason)), *notes]
            detail = "; ".join(note for note in notes if note)[:MAX_DETAIL_CHARS] or None
            entries.append(
                AuditEntryRecord(action=action, outcome=outcome_of(status), detail=detail, **common)
            )
        return entries

    def _notes(self, state: dict[str, Any]) -> list[str]:
        notes = []
        question = state.get(_QUESTION_KEY)
        if isinstance(question, str):
            notes.append(question_detail(question, self.keep_questions))
        notes.extend("sql: " + " ".join(sql.split()) for sql in state.get(_SQL_KEY, ()))
        return notes

    def _is_login(self, principal: Principal) -> bool:
        """Whether this authenticated request counts as the caller's login (first in the interval)."""
        if principal.kind == "local":
            return False
        now = time.monotonic()
        last = self._last_login.get(principal.rate_key)
        if last is not None and now - last < self.login_interval_s:
            return False
        if len(self._last_login) >= MAX_CALLERS:
            self._last_login.clear()  # a flood of callers costs extra login rows, never memory
        self._last_login[principal.rate_key] = now
        return True

    def _match(self, method: str, path: str) -> tuple[str | None, dict[str, Any]]:
        """The template of the first route that ``method path`` matches (as the router would pick it)
        and its path parameters; (None, {}) when none does."""
        if self._templates is None:
            self._templates = [
                (frozenset(context.methods or ()), context.path_regex, str(context.path))
                for context in iter_route_contexts(self.routes())
                if context.path is not None and getattr(context, "path_regex", None) is not None
            ]
        for methods, regex, template in self._templates:
            found = regex.match(path)
            if found is not None and (not methods or method in methods):
                return template, found.groupdict()
        return None, {}

    def _route(self, scope: Scope) -> tuple[str, str]:
        """The action (the route's permission) and the resource (its template, parameters filled in)."""
        method: str = scope.get("method", "")
        route = scope.get("route")
        params: dict[str, Any] = scope.get("path_params", {})
        template = getattr(route, "path", None)
        if route is None:  # refused before routing (ApiAccess): find the route it was meant for
            template, params = self._match(method, scope.get("path", ""))
        if not isinstance(template, str):
            return f"http.{method.lower()}", printable_text(scope.get("path", ""))[:MAX_RESOURCE_CHARS]
        permission = ROUTE_PERMISSIONS.get(route_key(method, template), f"http.{method.lower()}")
        return permission, fill_template(template, params)


def _reason(body: bytes) -> str:
    """The one-line message of a refusal's body (envelope or OpenAI shape); never credentials (refusals
    do not repeat them)."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    message = document.get("message")
    error = document.get("error")
    if message is None and isinstance(error, dict):
        message = error.get("message")
    return " ".join(str(message).split())[:500] if message else ""
