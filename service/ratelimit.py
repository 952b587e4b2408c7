"""Per-tenant request rate limits and daily image quotas, counted in Redis.

Fixed windows (one counter per tenant per minute, one per tenant per UTC day): an ``INCR``
and an ``EXPIRE`` in one round trip, shared by every API process. Without Redis (the
embedded mode's filesystem broker) the counters live in the API process, which is the only
one there.

When Redis cannot be reached the limits fail open: the request is served uncounted, the
degradation is logged (once per :data:`RETRY_SECONDS`) and counted (``forensics_rate_limit_failed_open``),
and Redis is not tried again for :data:`RETRY_SECONDS`, so an outage costs no request more
than one connection timeout. Refusing every tenant because a counter is unreachable would
turn a Redis restart into a full outage of the API.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from service.metrics import RATE_LIMIT_FAILED_OPEN
from service.settings import get_settings

logger = logging.getLogger(__name__)

#: Seconds an unreachable Redis is left alone before the next try.
RETRY_SECONDS = 5.0


class CounterUnavailable(Exception):
    """The shared counters cannot be reached; the caller fails open."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window ends
    window: int

    def headers(self) -> dict[str, str]:
        """The IETF ``RateLimit`` header fields (draft-ietf-httpapi-ratelimit-headers)."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset))
        return headers


class Counter(Protocol):
    def add(self, key: str, amount: int, ttl: int) -> int: ...

    def sub(self, key: str, amount: int) -> None: ...


class RedisCounter:
    """Counters in Redis, with a breaker: after a failure, :data:`RETRY_SECONDS` without trying."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.prefix = prefix
        self._down_until = 0.0

    def _call(self, operation: Callable[[], int]) -> int:
        if time.monotonic() < self._down_until:
            raise CounterUnavailable("Redis was unreachable moments ago")
        try:
            return operation()
        except self.errors as exc:
            self._down_until = time.monotonic() + RETRY_SECONDS
            raise CounterUnavailable(f"Redis is unreachable: {exc}") from exc

    def add(self, key: str, amount: int, ttl: int) -> int:
        def incr() -> int:
            pipe = self.client.pipeline(transaction=True)
            pipe.incrby(self.prefix + key, amount)
            pipe.expire(self.prefix + key, ttl, nx=True)
            return int(pipe.execute()[0])

        return self._call(incr)

    def sub(self, key: str, amount: int) -> None:
        self._call(lambda: int(self.client.decrby(self.prefix + key, amount)))


class MemoryCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[int, float]] = {}

    def add(self, key: str, amount: int, ttl: int) -> int:
        now = time.time()
        with self._lock:
            value, expires = self._values.get(key, (0, now + ttl))
            if expires <= now:
                value, expires = 0, now + ttl
            self._values[key] = (value + amount, expires)
            if len(self._values) > 10_000:
                self._values = {k: v for k, v in self._values.items() if v[1] > now}
            return value + amount

    def sub(self, key: str, amount: int) -> None:
        with self._lock:
            value, expires = self._values.get(key, (0, time.time()))
            self._values[key] = (value - amount, expires)


@lru_cache
def get_counter() -> Counter:
    settings = get_settings()
    url = settings.redis_url
    if url:
        return RedisCounter(url, f"{settings.broker_key_prefix}forensics:limits:")
    return MemoryCounter()


class _FailedOpen:
    """How many requests were let through uncounted, and when the last warning was logged."""

    def __init__(self) -> None:
        self.count = 0
        self._logged_at = float("-inf")
        self._lock = threading.Lock()

    def record(self, exc: CounterUnavailable, limit: str) -> None:
        RATE_LIMIT_FAILED_OPEN.labels(limit).inc()
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if now - self._logged_at < RETRY_SECONDS:
                return
            self._logged_at = now
        logger.warning("rate limits and quotas fail open (%d requests so far): %s", self.count, exc)


failed_open = _FailedOpen()


def _window(amount: int, limit: int, window: int, key: str, kind: str) -> Decision:
    now = time.time()
    start = int(now // window) * window
    reset = max(1, int(start + window - now))
    if limit <= 0:
        return Decision(True, 0, 0, reset, window)
    counter = get_counter()
    try:
        used = counter.add(f"{key}:{start}", amount, window + 5)
        if used > limit:
            counter.sub(f"{key}:{start}", amount)  # a refused call does not use the quota
            return Decision(False, limit, max(0, limit - used + amount), reset, window)
    except CounterUnavailable as exc:
        failed_open.record(exc, kind)
        return Decision(True, 0, 0, reset, window)
    return Decision(True, limit, limit - used, reset, window)


def hit_request(tenant_id: object, limit: int) -> Decision:
    """Count one request of the tenant in the current minute."""
    return _window(1, limit, 60, f"req:{tenant_id}", "requests")


def take_images(tenant_id: object, count: int, limit: int) -> Decision:
    """Take ``count`` images from the tenant's quota of the current UTC day (0 = unlimited)."""
    return _window(count, limit, 86400, f"img:{tenant_id}", "images")
