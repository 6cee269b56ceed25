"""The console's login sessions in the catalog (migration 0013) on SQLite and PostgreSQL: a row replaced in
place by a refresh, read only while it has not expired, taken by exactly one of many concurrent callbacks,
and pruned once expired."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ods.adapters.catalog import Catalog
from ods.adapters.catalog.login_sessions import LoginSessionRecord
from tests.support.postgres import temporary_database

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as opened:
            yield opened
        return
    with temporary_database("ods_test_login_") as url, Catalog.open(url) as opened:
        yield opened


def _row(
    key: str, *, kind: str = "active", minutes: int = 10, sealed: str = "sealed-1"
) -> LoginSessionRecord:
    return LoginSessionRecord(
        id=key,
        kind=kind,  # type: ignore[arg-type]
        expires_at=NOW + timedelta(minutes=minutes),
        sealed=sealed,
        tenant="acme",
        subject="alice",
        created_at=NOW,
    )


def test_a_session_is_replaced_in_place_and_read_until_it_expires(catalog: Catalog) -> None:
    catalog.put_login_session(_row("a" * 64))
    catalog.put_login_session(_row("a" * 64, sealed="sealed-2"))  # a refresh re-seals the same row

    found = catalog.get_login_session("a" * 64, NOW)
    assert found is not None and found.sealed == "sealed-2" and found.created_at == NOW
    assert (found.kind, found.tenant, found.subject) == ("active", "acme", "alice")
    assert catalog.get_login_session("a" * 64, NOW + timedelta(minutes=11)) is None
    assert catalog.get_login_session("b" * 64, NOW) is None


def test_a_pending_login_is_taken_by_one_caller_only(catalog: Catalog) -> None:
    catalog.put_login_session(_row("c" * 64, kind="pending"))
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda _: catalog.take_login_session("c" * 64, NOW), range(8)))
    assert len([row for row in taken if row is not None]) == 1
    assert catalog.get_login_session("c" * 64, NOW) is None

    catalog.put_login_session(_row("d" * 64, kind="pending", minutes=-1))
    assert catalog.take_login_session("d" * 64, NOW) is None  # expired: gone, not handed out


def test_ended_sessions_are_pruned_and_deletes_are_idempotent(catalog: Catalog) -> None:
    catalog.put_login_session(_row("e" * 64, minutes=-5))
    catalog.put_login_session(_row("f" * 64, minutes=5))
    assert catalog.prune_login_sessions(NOW) == 1
    assert catalog.prune_login_sessions(NOW) == 0
    assert catalog.delete_login_session("f" * 64) is True
    assert catalog.delete_login_session("f" * 64) is False
