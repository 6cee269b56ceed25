"""Test-wide set-up: quiet offline Prefect, an isolated ODS_HOME per test, shared service fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect reads these when first imported, so they are set before any test module imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="ods-test-prefect-")
for _name, _value in {
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ[_name] = _value
os.environ.pop("PREFECT_API_URL", None)

from tests.support.postgres import postgres_url  # noqa: E402, F401
from tests.support.s3_server import s3_server, s3_store  # noqa: E402, F401


@pytest.fixture(autouse=True)
def ods_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own ODS_HOME and no ODS_ setting leaks in from the developer's shell."""
    from ods.settings import get_settings

    for name in list(os.environ):
        if name.startswith("ODS_") and name != "ODS_TEST_CORPORA":
            monkeypatch.delenv(name)
    home = tmp_path / "ods-home"
    monkeypatch.setenv("ODS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    """The shared third-party corpora (../shared/corpora), found through ODS_TEST_CORPORA.

    CI sets the variable, so a missing folder there is a failure; on a user's fresh clone without the
    shared folder the corpus tests are skipped with this reason.
    """
    configured = os.environ.get("ODS_TEST_CORPORA")
    if not configured:
        pytest.skip("ODS_TEST_CORPORA is not set: corpus tests need ../shared/corpora (set by .ci/run)")
    path = Path(configured)
    if not (path / "README.md").is_file():
        pytest.fail(f"ODS_TEST_CORPORA={configured} does not hold the shared corpora (no README.md there)")
    return path
