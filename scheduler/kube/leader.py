"""Leader election on a ``coordination.k8s.io/v1`` Lease, with raw JSON and optimistic locking.

Only the leader watches-and-binds; every other replica waits. The protocol is client-go's
``leaderelection`` with a ``LeaseLock``, done explicitly:

- **Acquire** (every ``retry_period_s``, jittered): GET the Lease. Absent → CREATE it with us
  as holder. Held by someone else → wait until the record has not changed for its
  ``leaseDurationSeconds`` *as observed by our own clock* (no clock-skew assumptions), then
  take it over. Writes are PUTs carrying the ``resourceVersion`` we read, so of two
  contenders exactly one succeeds; the other gets 409 Conflict and keeps waiting.
- **Renew** (every ``retry_period_s`` while leading): PUT a fresh ``renewTime``. A failed
  renewal is retried; when no renewal has succeeded for ``renew_deadline_s`` — or the Lease
  is seen held by another identity — leadership is lost.
- **Release** (on ``stop()`` while leading, if ``release_on_stop``): clear
  ``holderIdentity`` so a standby takes over at its next retry instead of after a full lease
  duration.

States::

    FOLLOWER ──acquired──► LEADER ──renew failed for renew_deadline / lease taken──► LOST
        ▲                    │
        └──── (never) ◄──────┘ stop(): release → STOPPED

**Losing the lease is terminal.** ``on_stopped_leading`` runs once; the daemon must stop
binding immediately (check ``is_leader`` before every bind: it turns false as soon as the last
successful renewal is older than ``renew_deadline_s``, even if this thread is stalled) and
exit the process so it restarts as a follower with a clean cache. A split-brain window of at
most ``lease_duration_s`` remains possible (a stalled old leader); the uid precondition and
409 Conflict on ``pods/binding`` keep it safe.

Callbacks run on the elector thread and must return quickly (set an event, start a thread).
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.kube import errors

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

_JITTER = 1.2
"""Acquire retries wait ``retry_period * [1, 1.2)`` (client-go's JitterFactor)."""


def default_identity() -> str:
    """Return ``<hostname>_<pid>_<random hex>``: unique per process incarnation."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(4)}"


class LeaseStore(Protocol):
    """Lease persistence (``KubeClient`` implements it; unit tests use an in-memory fake)."""

    def get_lease(self, namespace: str, name: str) -> JsonDict | None:
        """Return the Lease or ``None`` when absent."""
        ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> JsonDict:
        """Create; raise ``errors.AlreadyExistsError`` when it exists."""
        ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> JsonDict:
        """Replace; raise ``errors.ConflictError`` when ``resourceVersion`` is stale."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElectionConfig:
    """Where the Lease lives and how the election is timed (seconds, floats).

    Requires ``lease_duration_s > renew_deadline_s > retry_period_s * 1.2 > 0`` (client-go's
    rule), so a leader gives up before anyone else may take over.
    """

    namespace: str
    """Lease namespace."""
    name: str
    """Lease name (one per scheduler name set)."""
    identity: str = field(default_factory=default_identity)
    """This replica's ``holderIdentity``."""
    lease_duration_s: float = 15.0
    """How long followers wait after the last observed change before taking over."""
    renew_deadline_s: float = 10.0
    """The leader gives up after failing to renew for this long."""
    retry_period_s: float = 2.0
    """Time between acquire/renew attempts."""
    release_on_stop: bool = True
    """Clear ``holderIdentity`` on ``stop()`` so a standby takes over quickly."""

    def __post_init__(self) -> None:
        """Validate the timing rule.

        Raises:
            ValueError: the durations are inconsistent.
        """
        if not self.namespace or not self.name or not self.identity:
            raise ValueError("lease namespace, name and identity must be non-empty")
        if self.retry_period_s <= 0:
            raise ValueError("retry_period_s must be positive")
        if self.renew_deadline_s <= self.retry_period_s * _JITTER:
            raise ValueError("renew_deadline_s must exceed retry_period_s * 1.2")
        if self.lease_duration_s <= self.renew_deadline_s:
            raise ValueError("lease_duration_s must exceed renew_deadline_s")


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, hold and release one Lease (see the module docstring for the protocol)."""

    def __init__(
        self,
        store: LeaseStore,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        rng: random.Random | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """Prepare (not start) an elector.

        Args:
            store: Lease persistence (the ``KubeClient``).
            config: Lease location and timing.
            on_started_leading: Called once when leadership is acquired.
            on_stopped_leading: Called once when leadership ends (lost or stopped); the
                daemon must stop binding and exit.
            clock: Monotonic seconds (expiry is judged on this clock only).
            wall_clock: Timezone-aware now, written into ``acquireTime``/``renewTime``.
            rng: Jitter source.
            wait: Sleep that returns True when stopped (default: the stop event's
                ``wait``); tests pass one that advances a fake clock.
        """
        self._store = store
        self.config = config
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._leading = False
        self._last_renew = -math.inf
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = -math.inf
        self._observed_duration = config.lease_duration_s
        self._latest: JsonDict | None = None
        self.observed_holder = ""
        """``holderIdentity`` of the Lease as last read."""
        self.transitions = 0
        """Times this elector became leader (0 or 1: losing is terminal)."""
        self.lost = threading.Event()
        """Set when leadership was held and then lost or given up."""

    # --- public surface -----------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """This replica's ``holderIdentity``."""
        return self.config.identity

    @property
    def is_leader(self) -> bool:
        """True while leading *and* the last successful renewal is younger than the deadline.

        Check it right before every bind: it turns false on its own if renewals stall.
        """
        with self._lock:
            return self._leading and self._clock() - self._last_renew < self.config.renew_deadline_s

    def start(self) -> None:
        """Run the election on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("elector already started")
        self._thread = threading.Thread(
            target=self.run, name="wfsched-leader-election", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop campaigning (releasing the Lease if leading and configured) and join."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Acquire, then renew until lost or stopped (blocking). Leadership is not retaken."""
        if not self._acquire_loop():
            return
        self._become_leader()
        self._renew_loop()
        released = False
        if self._stop.is_set() and self.config.release_on_stop:
            released = self.release()
        self._end_leadership(released=released)

    # --- one step of the state machine (unit-tested directly) ----------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Read the Lease once and try to become (or stay) its holder.

        Returns:
            True when this replica holds the Lease after the call.
        """
        cfg = self.config
        now = self._clock()
        try:
            current = self._store.get_lease(cfg.namespace, cfg.name)
        except errors.ApiError as exc:
            log.warning("lease read failed", extra={"error_kind": str(exc.kind)})
            return False
        if current is None:
            return self._create(now)
        spec = current.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        holder = str(spec.get("holderIdentity") or "")
        record = (
            holder,
            str(spec.get("renewTime") or ""),
            str((current.get("metadata") or {}).get("resourceVersion") or ""),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = now
            duration = spec.get("leaseDurationSeconds")
            self._observed_duration = (
                float(duration)
                if isinstance(duration, int | float) and duration > 0
                else cfg.lease_duration_s
            )
        self.observed_holder = holder
        self._latest = current
        if holder and holder != cfg.identity and now < self._observed_at + self._observed_duration:
            return False
        return self._update(current, spec, holder, now)

    def release(self) -> bool:
        """Give the Lease up (clear the holder) if we hold it; return True on success."""
        cfg = self.config
        try:
            current = self._store.get_lease(cfg.namespace, cfg.name)
            if current is None:
                return False
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != cfg.identity:
                return False
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = _micro_time(self._wall_clock())
            body = copy.deepcopy(current)
            body["spec"] = spec
            self._store.replace_lease(cfg.namespace, cfg.name, body)
        except errors.ApiError as exc:
            log.warning("lease release failed", extra={"error_kind": str(exc.kind)})
            return False
        log.info("lease released", extra={"identity": cfg.identity})
        return True

    # --- internals -----------------------------------------------------------------------------

    def _lease_spec(self, *, acquire_time: str, transitions: int) -> JsonDict:
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.config.lease_duration_s)),
            "acquireTime": acquire_time,
            "renewTime": _micro_time(self._wall_clock()),
            "leaseTransitions": transitions,
        }

    def _create(self, now: float) -> bool:
        cfg = self.config
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": self._lease_spec(acquire_time=_micro_time(self._wall_clock()), transitions=0),
        }
        try:
            created = self._store.create_lease(cfg.namespace, body)
        except errors.ApiError as exc:
            log.info("lease create lost", extra={"error_kind": str(exc.kind)})
            return False
        self._record_own(created, now)
        return True

    def _update(self, current: JsonDict, spec: JsonDict, holder: str, now: float) -> bool:
        cfg = self.config
        transitions_raw = spec.get("leaseTransitions")
        transitions = transitions_raw if isinstance(transitions_raw, int) else 0
        if holder == cfg.identity:
            acquire_time = str(spec.get("acquireTime") or _micro_time(self._wall_clock()))
        else:
            acquire_time = _micro_time(self._wall_clock())
            transitions += 1
        body = copy.deepcopy(current)
        body["spec"] = {
            **spec,
            **self._lease_spec(acquire_time=acquire_time, transitions=transitions),
        }
        try:
            updated = self._store.replace_lease(cfg.namespace, cfg.name, body)
        except errors.ApiError as exc:
            log.info("lease update failed", extra={"error_kind": str(exc.kind)})
            return False
        self._record_own(updated, now)
        return True

    def _record_own(self, lease: JsonDict, now: float) -> None:
        spec = lease.get("spec") or {}
        self._observed = (
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )
        self._observed_at = now
        self._observed_duration = self.config.lease_duration_s
        self.observed_holder = self.config.identity
        self._latest = lease
        with self._lock:
            self._last_renew = now

    def _acquire_loop(self) -> bool:
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                return True
            delay = self.config.retry_period_s * (1.0 + self._rng.random() * (_JITTER - 1.0))
            if self._wait(delay):
                break
        return False

    def _become_leader(self) -> None:
        with self._lock:
            self._leading = True
        self.transitions += 1
        log.info("became leader", extra={"identity": self.identity, "lease": self.config.name})
        try:
            self._on_started()
        except Exception:
            log.exception("on_started_leading failed")

    def _renew_loop(self) -> None:
        cfg = self.config
        while not self._wait(cfg.retry_period_s) and not self._stop.is_set():
            if self.try_acquire_or_renew():
                continue
            now = self._clock()
            taken = self.observed_holder not in ("", cfg.identity)
            with self._lock:
                overdue = now - self._last_renew >= cfg.renew_deadline_s
            if taken or overdue:
                log.warning(
                    "leadership lost",
                    extra={
                        "identity": cfg.identity,
                        "holder": self.observed_holder,
                        "reason": "taken" if taken else "renew deadline",
                    },
                )
                self.lost.set()
                return

    def _end_leadership(self, *, released: bool) -> None:
        with self._lock:
            self._leading = False
        log.info("stopped leading", extra={"identity": self.identity, "released": released})
        try:
            self._on_stopped()
        except Exception:
            log.exception("on_stopped_leading failed")
