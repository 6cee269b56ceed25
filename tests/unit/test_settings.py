"""The settings tree: defaults, nesting, profiles, masking, and one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ods.errors import SettingsError
from ods.settings import get_settings, load_settings, mask_url


def test_local_defaults_live_under_home(ods_home: Path) -> None:
    settings = load_settings()

    assert settings.profile == "local"
    assert settings.catalog_url == f"sqlite:///{(ods_home / 'catalog.db').resolve()}"
    assert settings.object_store.kind == "local"
    assert settings.object_store_root == (ods_home / "objects").resolve()
    assert settings.milvus_uri == str((ods_home / "milvus.db").resolve())
    assert settings.embedding.model == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("choice", "ingesting", "searching"),
    [("auto", True, False), ("in_process", False, False), ("own_process", True, True)],
)
def test_where_milvus_lite_is_served(
    monkeypatch: pytest.MonkeyPatch, choice: str, ingesting: bool, searching: bool
) -> None:
    monkeypatch.setenv("ODS_MILVUS__LITE_SERVER", choice)
    milvus = load_settings().milvus

    assert milvus.lite_in_own_process(ingesting=True) is ingesting
    assert milvus.lite_in_own_process(ingesting=False) is searching


def test_an_unknown_milvus_lite_server_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_MILVUS__LITE_SERVER", "elsewhere")

    with pytest.raises(SettingsError, match=r"ODS_MILVUS__LITE_SERVER: .*own_process"):
        load_settings()


def test_nested_values_come_from_double_underscore_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_OBJECT_STORE__KIND", "minio")
    monkeypatch.setenv("ODS_OBJECT_STORE__ENDPOINT", "127.0.0.1:9000")
    monkeypatch.setenv("ODS_OBJECT_STORE__ACCESS_KEY", "ak")
    monkeypatch.setenv("ODS_OBJECT_STORE__SECRET_KEY", "very-secret")
    monkeypatch.setenv("ODS_EMBEDDING__BATCH_SIZE", "16")

    settings = load_settings()

    assert settings.object_store.endpoint == "127.0.0.1:9000"
    assert settings.object_store.secret_key is not None
    assert settings.object_store.secret_key.get_secret_value() == "very-secret"
    assert settings.embedding.batch_size == 16


def test_an_empty_model_cache_variable_means_the_default_folder_not_the_working_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ODS_LLM__GGUF_CACHE", "")
    monkeypatch.setenv("ODS_EMBEDDING__ONNX_CACHE", "")
    assert load_settings().llm.gguf_cache is None
    assert load_settings().embedding.onnx_cache is None

    monkeypatch.setenv("ODS_LLM__GGUF_CACHE", "/var/cache/ods-llm")
    assert load_settings().llm.gguf_cache == Path("/var/cache/ods-llm")


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("ODS_PROFILE", "cluster")

    assert get_settings() is first
    get_settings.cache_clear()
    with pytest.raises(SettingsError):
        get_settings()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ODS_OBJECT_STORE__KIND": "s3"},
            "ODS_OBJECT_STORE__KIND: Input should be 'local' or 'minio' (got 's3')",
        ),
        ({"ODS_PROFILE": "prod"}, "ODS_PROFILE: Input should be 'local' or 'cluster' (got 'prod')"),
        ({"ODS_EMBEDDING__BATCH_SIZE": "lots"}, "ODS_EMBEDDING__BATCH_SIZE: Input should be a valid integer"),
        (
            {"ODS_EMBEDDING__BATCH_SIZE": "0"},
            "ODS_EMBEDDING__BATCH_SIZE: Input should be greater than or equal to 1",
        ),
        ({"ODS_OBJECT_STORE__BUCKET": "Bad_Bucket"}, "ODS_OBJECT_STORE__BUCKET: String should match pattern"),
        (
            {"ODS_OBJECT_STORE__KIND": "minio"},
            "needs ODS_OBJECT_STORE__ENDPOINT, ODS_OBJECT_STORE__ACCESS_KEY",
        ),
        (
            {
                "ODS_OBJECT_STORE__KIND": "minio",
                "ODS_OBJECT_STORE__ENDPOINT": "http://minio:9000",
                "ODS_OBJECT_STORE__ACCESS_KEY": "a",
                "ODS_OBJECT_STORE__SECRET_KEY": "b",
            },
            "endpoint must be host:port without a scheme or path (got 'http://minio:9000')",
        ),
        ({"ODS_PROFILE": "cluster"}, "profile 'cluster' needs ODS_CATALOG__URL (a PostgreSQL URL)"),
        (
            {"ODS_CATALOG__CONNECT_TIMEOUT_S": "-1"},
            "ODS_CATALOG__CONNECT_TIMEOUT_S: Input should be greater than 0",
        ),
        (
            {"ODS_INGEST__MAX_DOCUMENT_CHARS": "0"},
            "ODS_INGEST__MAX_DOCUMENT_CHARS: Input should be greater than or equal to 1",
        ),
    ],
)
def test_invalid_values_give_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith("invalid settings: ")
    assert expected in message
    assert "\n" not in message


def test_secret_values_never_appear_in_the_masked_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_CATALOG__URL", "postgresql+psycopg://ods:hunter2@db:5432/ods")
    monkeypatch.setenv("ODS_LLM__API_KEY", "sk-live-123")

    rendered = str(load_settings().masked())

    assert "hunter2" not in rendered
    assert "sk-live-123" not in rendered
    assert "postgresql+psycopg://ods:***@db:5432/ods" in rendered


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


CLUSTER = {
    "ODS_PROFILE": "cluster",
    "ODS_CATALOG__URL": "postgresql+psycopg://ods:hunter2@db:5432/ods",
    "ODS_OBJECT_STORE__KIND": "minio",
    "ODS_OBJECT_STORE__ENDPOINT": "minio:9000",
    "ODS_OBJECT_STORE__ACCESS_KEY": "ak",
    "ODS_OBJECT_STORE__SECRET_KEY": "sk",
    "ODS_MILVUS__URI": "http://milvus:19530",
}


def test_the_cluster_profile_accepts_postgresql_minio_and_a_milvus_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in CLUSTER.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    assert (settings.profile, settings.object_store.kind, settings.milvus_uri) == (
        "cluster",
        "minio",
        "http://milvus:19530",
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"ODS_CATALOG__URL": "sqlite:////var/lib/ods/catalog.db"},
            "profile 'cluster' refuses ODS_CATALOG__URL=<a SQLite URL> (a file only one machine can open): "
            "set a PostgreSQL URL",
        ),
        (
            {"ODS_CATALOG__URL": "mysql+pymysql://ods:hunter2@db/ods"},
            "refuses ODS_CATALOG__URL=<a mysql URL>",
        ),
        (
            {"ODS_MILVUS__URI": "/var/lib/ods/milvus.db"},
            "refuses ODS_MILVUS__URI='/var/lib/ods/milvus.db' (a Milvus Lite file only one process can open): "
            "set a Milvus server URI, http://host:19530",
        ),
        ({"ODS_MILVUS__URI": "milvus.db"}, "refuses ODS_MILVUS__URI='milvus.db' (a Milvus Lite file"),
        (
            {"ODS_OBJECT_STORE__KIND": "local"},
            "refuses ODS_OBJECT_STORE__KIND=local (a directory only one machine sees): set "
            "ODS_OBJECT_STORE__KIND=minio",
        ),
    ],
)
def test_the_cluster_profile_refuses_embedded_stand_ins_by_name(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str], expected: str
) -> None:
    for name, value in {**CLUSTER, **changes}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith("invalid settings: profile 'cluster' ")
    assert expected in message
    assert "\n" not in message
    assert "hunter2" not in message  # the catalog URL's kind is named, never the URL itself


def test_model_servers_bind_loopback_unless_a_host_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().serving.host == "127.0.0.1"

    monkeypatch.setenv("ODS_SERVING__HOST", "0.0.0.0")  # noqa: S104 - a worker behind a network boundary

    assert load_settings().serving.host == "0.0.0.0"  # noqa: S104
