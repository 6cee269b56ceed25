"""Which Milvus errors are retried, and how (``ods.adapters.milvus.index``): a scripted client, a fake clock.

The restart of a real Milvus Lite server is in tests/integration/test_milvus_restart.py; these pin the
classification and the backoff without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import ConnectError, MilvusException, ParamError

from ods.adapters.milvus.client import VectorIndexError, VectorIndexUnavailable, is_transient_milvus_error
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import MODEL_ID_PROPERTY, ChunkRow

DOWN = MilvusException(
    code=2,
    message="Fail connecting to server on 127.0.0.1:19530, illegal connection params or server unavailable",
)


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    "error",
    [
        DOWN,
        ConnectError(message="connection refused"),
        MilvusException(code=grpc.StatusCode.UNAVAILABLE, message="[upsert] Retry timeout: 30s, UNAVAILABLE"),
        MilvusException(code=grpc.StatusCode.DEADLINE_EXCEEDED, message="deadline"),
        MilvusException(code=65535, message="proxy not ready: service not ready"),
        MilvusException(code=8, message="rate limit exceeded"),
        MilvusException(code=1, message="some fault", retriable=True),
        _RpcError(grpc.StatusCode.UNAVAILABLE),
        ConnectionResetError("connection reset by peer"),
        TimeoutError("timed out"),
    ],
)
def test_faults_of_an_absent_or_busy_server_are_transient(error: BaseException) -> None:
    assert is_transient_milvus_error(error)


@pytest.mark.parametrize(
    "error",
    [
        ParamError(message="invalid dimension: connection refused is not a dimension"),
        MilvusException(code=1100, message="the dim (8) of field data(dense) is not equal to schema dim (4)"),
        MilvusException(code=1100, message="server unavailable", is_input_error=True),
        MilvusException(code=100, message="collection not found[collection=kb_x]"),
        _RpcError(grpc.StatusCode.INVALID_ARGUMENT),
        ValueError("bad"),
    ],
)
def test_refused_requests_are_not_transient(error: BaseException) -> None:
    assert not is_transient_milvus_error(error)


class _ScriptedClient:
    """Answers ``upsert`` with the scripted outcomes in turn (an exception is raised); the rest succeeds."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def has_collection(self, name: str, timeout: float) -> bool:
        return True

    def describe_collection(self, name: str, timeout: float) -> dict[str, Any]:
        return {
            "properties": {MODEL_ID_PROPERTY: "model"},
            "fields": [{"name": "dense", "params": {"dim": 4}}],
        }

    def load_collection(self, name: str, timeout: float) -> None:
        self.calls.append("load")

    def upsert(self, name: str, records: list[dict[str, Any]], timeout: float) -> dict[str, int]:
        self.calls.append("upsert")
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return {"upsert_count": len(records)}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _index(client: _ScriptedClient, clock: _Clock, retry_s: float = 30.0) -> MilvusVectorIndex:
    time_now: Callable[[], float] = lambda: clock.now  # noqa: E731
    return MilvusVectorIndex(
        client,  # type: ignore[arg-type]
        "kb_test",
        4,
        "model",
        uri="http://milvus.example:19530",
        retry_s=retry_s,
        sleep=clock.sleep,
        clock=time_now,
    )


ROW = ChunkRow(
    id="c1", kb="kb", doc_uri="u", doc_sha256="0" * 64, chunk_index=0, text="t", vector=[1, 0, 0, 0]
)


def test_a_blip_is_retried_with_backoff_and_the_write_happens_once_it_is_over() -> None:
    client, clock = _ScriptedClient([DOWN, DOWN, DOWN, None]), _Clock()

    assert _index(client, clock).upsert([ROW]) == 1

    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert client.calls == ["load", "upsert", "upsert", "upsert", "upsert"]


def test_a_released_collection_is_loaded_again_before_the_next_attempt() -> None:
    released = MilvusException(code=101, message="Collection 'kb_test' is in state 'released'; call load()")
    client, clock = _ScriptedClient([released, None]), _Clock()

    assert _index(client, clock).upsert([ROW]) == 1

    assert client.calls == ["load", "upsert", "load", "upsert"]


def test_a_server_that_stays_away_fails_once_naming_the_uri_and_what_to_check() -> None:
    client, clock = _ScriptedClient([DOWN] * 100), _Clock()

    with pytest.raises(VectorIndexUnavailable) as raised:
        _index(client, clock, retry_s=10).upsert([ROW])

    message = str(raised.value)
    assert message.startswith("Milvus at http://milvus.example:19530 is unavailable: could not upsert chunks")
    assert "7 attempt(s) over 9.5 s (Fail connecting to server" in message
    assert "ODS_MILVUS__URI" in message and "\n" not in message
    assert sum(clock.sleeps) <= 10 and clock.sleeps[-1] == 2.0


def test_a_refused_request_fails_at_once_and_no_retry_is_attempted() -> None:
    refused = MilvusException(
        code=1100, message="the dim (8) of field data(dense) is not equal to schema dim (4)"
    )
    client, clock = _ScriptedClient([refused]), _Clock()

    with pytest.raises(VectorIndexError, match="not equal to schema dim") as raised:
        _index(client, clock).upsert([ROW])

    assert not isinstance(raised.value, VectorIndexUnavailable) and clock.sleeps == []


def test_no_retry_when_retry_s_is_zero() -> None:
    client, clock = _ScriptedClient([DOWN]), _Clock()

    with pytest.raises(VectorIndexUnavailable, match="in 1 attempt"):
        _index(client, clock, retry_s=0).upsert([ROW])
    assert clock.sleeps == []


def test_the_index_task_retries_an_unavailable_milvus_but_not_a_refused_request() -> None:
    from prefect.states import Failed

    from tasks.presets import retry_on_transient_errors

    def failed_with(error: Exception) -> Any:
        return Failed(data=error)

    assert retry_on_transient_errors(
        None, None, failed_with(VectorIndexUnavailable("Milvus at x is unavailable"))
    )
    assert not retry_on_transient_errors(None, None, failed_with(VectorIndexError("dimension mismatch")))
