"""Client-side rate limiting: a thread-safe token bucket shared by every API call.

``TokenBucket(qps, burst)`` holds up to ``burst`` tokens and refills at ``qps`` tokens per
second, like client-go's ``flowcontrol.NewTokenBucketRateLimiter``. A caller *reserves* a token
under the lock (the balance may go negative: that is the queue of waiters) and then sleeps
outside the lock until its reservation matures, so concurrent callers are served in arrival
order and never hold the lock while sleeping. The clock and the sleep function are injected,
so unit tests run on a fake clock without real waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimitTimeout(Exception):  # noqa: N818 - reads better at call sites than ...Error
    """A token was not available within the caller's ``max_wait``."""


class TokenBucket:
    """A token bucket limiter; ``qps <= 0`` means unlimited.

    Invariants: at most ``burst`` tokens accumulate; over any window of length ``T`` at most
    ``burst + qps * T`` acquisitions complete.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Create a full bucket.

        Args:
            qps: Refill rate in tokens per second; ``<= 0`` disables limiting.
            burst: Bucket capacity (at least 1 when limiting).
            clock: Monotonic time source in seconds.
            sleep: Blocks the calling thread for the given seconds.
        """
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = clock()
        self.waited_s = 0.0
        """Total seconds callers spent waiting for tokens (for metrics and tests)."""
        self._local = threading.local()

    @property
    def unlimited(self) -> bool:
        """True when the bucket never blocks."""
        return self.qps <= 0

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
            self._last = now

    def reserve(self, *, max_wait: float | None = None) -> float:
        """Take one token now and return how long the caller must wait before using it.

        Args:
            max_wait: When the wait would exceed this many seconds, take nothing and raise.

        Returns:
            Seconds to wait (0 when a token was available).

        Raises:
            RateLimitTimeout: the wait would exceed ``max_wait``.
        """
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            self._refill(now)
            wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.qps
            if max_wait is not None and wait > max_wait:
                raise RateLimitTimeout(f"rate limit: would wait {wait:.3f}s > {max_wait:.3f}s")
            self._tokens -= 1.0
            return wait

    def acquire(self, *, max_wait: float | None = None) -> float:
        """Block until one token is available and take it.

        Args:
            max_wait: Give up (taking nothing) when the wait would exceed this many seconds.

        Returns:
            Seconds waited.

        Raises:
            RateLimitTimeout: the wait would exceed ``max_wait``.
        """
        wait = self.reserve(max_wait=max_wait)
        self._local.waited_s = getattr(self._local, "waited_s", 0.0) + wait
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited_s += wait
        return wait

    def thread_waited_s(self, *, reset: bool = False) -> float:
        """Seconds the calling thread has waited in ``acquire`` (since its last reset).

        A worker resets it before a request and reads it after, to tell the rate limiter's
        share of a call's latency from the server's.
        """
        waited = float(getattr(self._local, "waited_s", 0.0))
        if reset:
            self._local.waited_s = 0.0
        return waited

    def try_acquire(self) -> bool:
        """Take a token only if one is available right now."""
        try:
            self.reserve(max_wait=0.0)
        except RateLimitTimeout:
            return False
        return True

    def available(self) -> float:
        """Tokens available now (negative while callers are queued)."""
        if self.unlimited:
            return float("inf")
        with self._lock:
            self._refill(self._clock())
            return self._tokens
