"""The API's rate limiter: which routes count against which limit, the sliding window, its headers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ods.api.rate_limits import RateDecision, SlidingWindowLimiter, api_type_of


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("path", "api_type"),
    [
        ("/v1/chat/completions", "inference"),
        ("/v1/completions", "inference"),
        ("/v1/embeddings/", "inference"),
        ("/api/v1/ask", "inference"),
        ("/api/v1/query/execute", "query"),
        ("/api/v1/query/validate", "query"),
        ("/api/v1/datasets", "metadata"),
        ("/api/v1/knowledge-bases/policies/search", "metadata"),
        ("/api/v1/webhooks", "metadata"),
        ("/v1/models", "metadata"),
        ("/api/v1/asking", "metadata"),
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/docs", None),
        ("/openapi.json", None),
        ("/api/v10/x", None),
    ],
)
def test_each_route_counts_against_its_api_type(path: str, api_type: str | None) -> None:
    assert api_type_of(path) == api_type


def test_the_limit_holds_in_any_window_and_frees_as_requests_age() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter({"inference": 3, "query": 0, "metadata": 5}, clock=clock)

    decisions = []
    for _ in range(3):
        decisions.append(limiter.hit("key:1", "inference"))
        clock.now += 10
    refused = limiter.hit("key:1", "inference")

    assert [d.remaining for d in decisions if d] == [2, 1, 0]
    assert refused == RateDecision(allowed=False, limit=3, remaining=0, reset_s=30)
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "30",
        "Retry-After": "30",
    }
    clock.now += 29.5  # the first request is 59.5 s old: still in the window
    assert limiter.hit("key:1", "inference") == RateDecision(False, 3, 0, 1)
    clock.now += 0.5  # now it has left: one request fits, not two
    assert limiter.hit("key:1", "inference") == RateDecision(True, 3, 0, 10)
    assert not limiter.hit("key:1", "inference").allowed


def test_callers_and_api_types_have_windows_of_their_own() -> None:
    limiter = SlidingWindowLimiter({"inference": 1, "query": 1, "metadata": 1}, clock=FakeClock())

    assert limiter.hit("key:1", "inference").allowed
    assert not limiter.hit("key:1", "inference").allowed
    assert limiter.hit("key:1", "query").allowed
    assert limiter.hit("key:2", "inference").allowed
    assert limiter.hit("address:127.0.0.1", "inference").allowed


def test_a_limit_of_zero_is_no_limit_and_no_headers() -> None:
    limiter = SlidingWindowLimiter({"inference": 0, "query": 60, "metadata": 200}, clock=FakeClock())
    assert all(limiter.hit("key:1", "inference") is None for _ in range(1000))
    assert limiter.callers() == 0


def test_idle_callers_are_forgotten() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter({"inference": 5, "query": 5, "metadata": 5}, clock=clock)
    for number in range(2000):
        limiter.hit(f"address:10.0.{number // 256}.{number % 256}", "metadata")
    clock.now += 61
    for _ in range(1024):
        limiter.hit("key:1", "metadata")
    assert limiter.callers() == 1


def test_concurrent_requests_never_pass_the_limit() -> None:
    limiter = SlidingWindowLimiter({"inference": 50, "query": 50, "metadata": 50}, clock=FakeClock())
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda _: limiter.hit("key:1", "query"), range(400)))
    assert sum(1 for decision in decisions if decision and decision.allowed) == 50


def test_reset_never_exceeds_the_window_when_the_sum_rounds_up() -> None:
    clock = FakeClock()
    clock.now = 32728.185951439325
    limiter = SlidingWindowLimiter({"query": 5}, window_s=60.0, clock=clock)
    assert (clock.now + 60.0) - clock.now > 60.0  # the float rounding the cap guards against
    decision = limiter.hit("key", "query")
    assert decision is not None and decision.reset_s == 60
