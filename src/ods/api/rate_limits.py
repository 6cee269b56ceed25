"""Per-key rate limits of `ods serve`, per API type: inference, data query and metadata (and, with
:meth:`SlidingWindowLimiter.hit_within`, the per-tenant request quota of ``ods.api.quotas``).

Each (caller, API type) pair may make ``limit`` requests in any 60 s: a sliding-window log that keeps the
times of the requests it let through, so a burst at a minute's edge cannot pass twice the limit as a fixed
window would. The counts live in this server process: two processes behind one address each allow the
limit, and a restart forgets them. A caller is its API key, or its client address when it sent none.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

ApiType = Literal["inference", "query", "metadata"]
WINDOW_S = 60.0
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/v1/ask"})
_PRUNE_EVERY = 1024
"""Hits between sweeps that drop the callers with nothing left in their window (memory stays bounded)."""


def api_type_of(path: str) -> ApiType | None:
    """The API type whose limit ``path`` counts against; None for the routes outside the limits (health,
    readiness, metrics, docs)."""
    trimmed = path.rstrip("/")
    if trimmed in INFERENCE_PATHS:
        return "inference"
    if trimmed.startswith("/api/v1/query/"):
        return "query"
    if trimmed == "/api/v1" or trimmed.startswith(("/api/v1/", "/v1/")):
        return "metadata"
    return None


@dataclass(frozen=True)
class RateDecision:
    """Whether one request may go on, and what its ``X-RateLimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    """Seconds until the oldest counted request leaves the window (the wait before a refused one)."""

    def headers(self) -> dict[str, str]:
        values = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            values["Retry-After"] = str(self.reset_s)
        return values


class SlidingWindowLimiter:
    """At most ``limits[api_type]`` requests per caller and API type in any ``window_s`` (0: unlimited).

    ``clock`` is injected so tests move time instead of waiting. Safe to call from many threads.
    """

    def __init__(
        self,
        limits: Mapping[ApiType, int],
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = dict(limits)
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._since_prune = 0

    def hit(self, caller: str, api_type: ApiType) -> RateDecision | None:
        """Count one request of ``caller`` if its window has room; None when ``api_type`` is unlimited."""
        return self.hit_within(caller, self.limits.get(api_type, 0), api_type)

    def hit_within(self, caller: str, limit: int, window: str = "all") -> RateDecision | None:
        """Count one request of ``caller`` against ``limit`` in its ``window`` (an API type, or one window
        for every request: a tenant's quota) if there is room; None when ``limit`` is 0 (unlimited)."""
        if limit <= 0:
            return None
        with self._lock:
            now = self._clock()
            self._prune(now)
            hits = self._hits.setdefault((caller, window), deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            reset = hits[0] + self.window_s - now if hits else 0.0
            return RateDecision(
                allowed=allowed,
                limit=limit,
                remaining=limit - len(hits),
                # (a + window) - a can round above the window: never report more than the window.
                reset_s=max(0, min(math.ceil(reset), math.ceil(self.window_s))),
            )

    def _prune(self, now: float) -> None:
        self._since_prune += 1
        if self._since_prune < _PRUNE_EVERY:
            return
        self._since_prune = 0
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self.window_s]
        for key in idle:
            del self._hits[key]

    def callers(self) -> int:
        """How many (caller, API type) windows are kept (for tests of the memory bound)."""
        with self._lock:
            return len(self._hits)
