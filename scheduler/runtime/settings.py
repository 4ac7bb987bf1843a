"""Daemon configuration: a YAML file plus ``WFSCHED_*`` environment overrides, validated once.

Precedence: defaults < YAML file < environment. Every key of the YAML file has an environment
twin: ``WFSCHED_`` + the key in upper case with dots as double underscores
(``lease.duration_s`` → ``WFSCHED_LEASE__DURATION_S``). List values in the environment are
comma-separated. ``load_settings`` raises ``SettingsError`` with every problem found, each
naming the key, so the daemon refuses to start with a clear message instead of crashing later.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.core import grow

DEFAULT_SCHEDULER_NAME = "workflow-scheduler"


class SettingsError(ValueError):
    """The configuration is invalid; ``problems`` lists each issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSettings:
    """Leader election on a ``coordination.k8s.io`` Lease."""

    enabled: bool = True
    """Elect a leader; only the leader binds. Off: this replica always schedules."""
    name: str = "wfsched"
    """Lease name."""
    namespace: str = "kube-system"
    """Lease namespace."""
    duration_s: float = 15.0
    """How long a lease is valid without renewal (kube-scheduler: 15 s)."""
    renew_deadline_s: float = 10.0
    """The leader gives up when it could not renew for this long."""
    retry_period_s: float = 2.0
    """How often to try to acquire or renew."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GangSettings:
    """Gangs: pods placed all or nothing (docs/gangs.md)."""

    watch_pod_groups: bool = True
    """Read ``PodGroup`` objects (``scheduling.k8s.io/v1alpha2``) when the API server serves
    them; pods naming a PodGroup in ``spec.schedulingGroup`` then form gangs."""
    timeout_s: float = 60.0
    """A gang without a place for this long gets an Event and ``PodScheduled=False``."""
    reserve_after_s: float = 30.0
    """A gang without a place for this long reserves: nothing ranked after it is placed while
    it does not fit, so running tasks drain and make room. Also the length of the backfill
    windows between two reservations."""
    reserve_for_s: float = 300.0
    """Length of one reservation window."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the daemon needs to run; immutable once loaded."""

    scheduler_names: tuple[str, ...] = (DEFAULT_SCHEDULER_NAME,)
    """Pods whose ``spec.schedulerName`` is one of these (or ``<first name>-<execution>`` for
    executions registered through the REST API) are ours."""
    policy: str = "rank_min-roundrobin"
    """Ranking and assignment strategy, ``<ranking>[-<assignment>]``."""
    predictor: str = ""
    """Memory predictor spec (e.g. ``ponder``, ``lr-offset=none``); empty: no memory scaling."""
    min_memory_bytes: int = 128 * 1024 * 1024
    """Floor for predicted memory."""
    min_memory_per_cpu_bytes: int = 0
    """Floor for predicted memory per CPU the task requests (0: none); see docs/benchmarks.md
    for what it does to failed attempts and makespan."""
    max_memory_bytes: int = 0
    """Cap for predicted memory; 0 means no cap (the task's own request still caps it)."""
    grow_in_place: bool = False
    """Raise the memory of running tasks of ours before they reach their limit (in-place
    resize; needs ``metrics_poll_s`` > 0 and nodes that support resize). See docs/resize.md."""
    grow_threshold: float = 0.8
    """Grow a task when its memory usage reaches this fraction of its limit."""
    grow_factor: float = 1.5
    """Each grow multiplies the limit by at least this (request raised by as much)."""
    grow_max_times: int = 3
    """Grows per task at most; then its limit stays (the engine retries an OOM kill)."""
    grow_max_memory_bytes: int = 0
    """No grow raises a limit above this; 0: only the node's free memory limits it."""
    shrink_running: bool = False
    """Lower the memory of running tasks of ours that started before the memory model could plan
    their step, once it can (in-place resize; Kubernetes 1.34+ nodes). See docs/resize.md."""
    shrink_min_saving_bytes: int = 256 * 1024 * 1024
    """Shrink a running task only when its request falls by at least this many bytes (and by at
    least a tenth)."""
    memory_priors: bool = True
    """Seed a step never seen before from the peaks held for the same tool (step short name and
    container image) in other workflows and for the same step under other workflow names, so
    its first tasks are right-sized too (docs/memory-prediction.md). False: cold starts keep
    the full request until a task of the step finished."""
    memory_store_configmap: str = "wfsched-memory"
    """ConfigMap (in the lease namespace) that keeps memory observations (key
    ``observations.json``) and the workflow history (``history.json``) across restarts."""
    memory_save_interval_s: float = 30.0
    """How often changed observations and history are written to that ConfigMap (what a crash
    can lose; a graceful shutdown writes them too)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose pods are scheduled; empty: all namespaces."""
    qps: float = 200.0
    """Client-side request rate limit towards the API server."""
    burst: int = 400
    """Client-side burst."""
    bind_workers: int = 16
    """Concurrent Binding calls."""
    cycle_interval_s: float = 10.0
    """Safety cycle period when nothing else triggers one."""
    arrival_settle_s: float = 0.0
    """When > 0, a cycle waits until no new pending task has arrived for this long (at most
    ``arrival_settle_max_s`` after the first one), so the tasks one finish releases are ranked
    together: engines create a release's pods one at a time, and deciding on the first ones
    alone fills the nodes in creation order. Not applied under a ranking that orders by
    arrival (``fifo``), where waiting cannot change the order. Off by default (decide at once,
    as kube-scheduler does): while tasks keep arriving, the wait also leaves freed room idle,
    and on the nf-core replays that cost more than the better order gained
    (docs/benchmarks.md)."""
    arrival_settle_max_s: float = 0.5
    """Longest a cycle waits for a release to settle (``arrival_settle_s``)."""
    unschedulable_backoff_s: float = 10.0
    """Cap of the retry backoff (kube-scheduler's ``podMaxBackoffSeconds``): after a failed
    Binding a task waits 1 s, doubling with each consecutive failure up to this, at its place
    in the queue; a task whose cycles raise is set aside on the same schedule."""
    unschedulable_report_interval_s: float = 10.0
    """A pending pod's ``PodScheduled=False`` condition and ``FailedScheduling`` Event are
    rewritten when the reason changes, but at most once per this many seconds (the first
    report is never delayed; 0: at every change). Every cycle re-evaluates a waiting task, and
    on a full cluster the node counts in its reason change at almost every placement: without
    the interval that was four status writes and four Events per pod on the nf-core replays
    with memory prediction, on an API server already at its limit."""
    assumed_pod_ttl_s: float = 30.0
    """An assumed pod whose Binding succeeded but that the watch has not shown bound after
    this long is forgotten (kube-scheduler's assumed-pod expiry): its room on the node is
    freed until the watch reports the truth."""
    stale_pending_s: float = 300.0
    """Pods of ours pending longer than this are counted as stale."""
    finished_run_idle_s: float = 3600.0
    """A workflow run learned from pod labels with no task pending, being bound or running for
    this long is forgotten: its DAG, finished counts and per-task memory marks. This bounds the
    daemon's memory by the runs of the last hour instead of every run ever seen. A later task
    of the run starts it afresh (step edges learned for its workflow name are kept), so keep it
    above the longest gap between two tasks of one run. CWS executions are dropped by their
    own rules instead (``cws_execution_idle_s``, DELETE)."""
    seed: int = 0
    """Seed for random strategies (0: derived from the identity of this replica)."""
    metrics_poll_s: float = 15.0
    """How often node usage is read from metrics.k8s.io (0: never)."""
    health_port: int = 10259
    """Port of /healthz, /readyz and /metrics."""
    rest_port: int = 8080
    """Port of the CWS-compatible REST API (0: off)."""
    rest_max_body_bytes: int = 1 << 20
    """Largest request body the REST API reads (bigger: 413); 1 MiB holds a DAG of ~10k edges."""
    rest_max_items: int = 10_000
    """Most vertices, edges or ids one REST request may carry (more: 413)."""
    rest_max_task_body_bytes: int = 32 << 20
    """Largest task registration body (bigger: 413). nf-cws lists every input file of a task in
    it, about 240 bytes each: a MultiQC task of a large nf-core run sends 10^4+ files, and
    32 MiB holds about 140,000. It is buffered on disk by the server (beyond 512 KiB) and parsed
    as a stream: only the fields wfsched uses and the number of input files are kept."""
    rest_threads: int = 8
    """Threads answering REST requests (a request is read in full before it takes one)."""
    http_connection_limit: int = 100
    """Open connections each HTTP server (REST, health) accepts; more wait in the backlog."""
    http_request_timeout_s: float = 30.0
    """A request (headers and body) must arrive within this; a slower client is disconnected."""
    http_idle_timeout_s: float = 60.0
    """A keep-alive connection idle this long is closed (whole seconds)."""
    adopt_unregistered_executions: bool = False
    """Schedule pods named ``<first name>-<execution>`` whose execution was never registered
    here (after ``registration_grace_s``). Off: they are left alone, because a CWS instance
    using the same scheduler name may own them (see docs/rest-api.md, coexistence)."""
    cws_execution_idle_s: float = 86_400.0
    """A CWS execution with no request and no pod event for this long is dropped, as if
    DELETEd (engines that crash never DELETE); 0: never. Raise it above the longest task of
    your workflows: nf-cws calls nothing while its only running task runs."""
    cws_state_save_interval_s: float = 1.0
    """How often the leader writes changed CWS executions to ConfigMaps in the lease namespace,
    so that a new leader continues their runs (registrations and deletions are written before
    the reply); 0: not kept (a failover loses every execution)."""
    batch_timeout_s: float = 30.0
    """A closed batch is released this long after ``endBatch`` even if some registered pods
    never appeared (CWS keeps it closed forever, defect D10)."""
    registration_grace_s: float = 30.0
    """A pod with a per-execution scheduler name but no task registration waits this long for
    one, then is scheduled as a task of its own (CWS never schedules it, defect D22)."""
    bind_address: str = "0.0.0.0"
    """Address the HTTP servers listen on."""
    log_format: str = "json"
    """``json`` or ``console``."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    """Leader election."""
    gangs: GangSettings = field(default_factory=GangSettings)
    """Gang scheduling."""


_LOG_FORMATS = ("json", "console")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _coerce(value: Any, target: Any, key: str, problems: list[str]) -> Any:
    """Convert ``value`` to the type of the default ``target``; record a problem on failure."""
    try:
        if isinstance(target, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(target, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if isinstance(target, float):
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if isinstance(target, tuple):
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, list | tuple):
                items = [str(v).strip() for v in value]
            else:
                raise ValueError(value)
            return tuple(items)
        if isinstance(target, str):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError, OverflowError):
        problems.append(f"{key}: cannot use {value!r} as {type(target).__name__}")
        return target
    problems.append(f"{key}: unsupported setting")
    return target


def _build(cls: Any, values: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    defaults = cls()
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            problems.append(f"{prefix}{key}: unknown setting (known: {', '.join(sorted(known))})")
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default):
            nested = values[f.name]
            if not isinstance(nested, Mapping):
                problems.append(f"{prefix}{f.name}: expected a mapping")
                continue
            kwargs[f.name] = _build(type(default), nested, f"{prefix}{f.name}.", problems)
        else:
            kwargs[f.name] = _coerce(values[f.name], default, prefix + f.name, problems)
    return cls(**kwargs)


def _env_overrides(env: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Turn ``WFSCHED_A__B=v`` into ``{"a": {"b": "v"}}``.

    A name that is both a value and a section (``WFSCHED_LEASE`` next to
    ``WFSCHED_LEASE__ENABLED``) is a problem.
    """
    overrides: dict[str, Any] = {}
    for name in sorted(env):
        if not name.startswith("WFSCHED_") or name in ("WFSCHED_CONFIG", "WFSCHED_API_TOKEN"):
            continue
        path = name.removeprefix("WFSCHED_").lower().split("__")
        target = overrides
        for depth, part in enumerate(path[:-1]):
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                section = "WFSCHED_" + "__".join(path[: depth + 1]).upper()
                problems.append(f"{name}: conflicts with {section} (a value, not a section)")
                break
            target = nested
        else:
            if isinstance(target.get(path[-1]), dict):
                problems.append(f"{name}: conflicts with {name}__* (a section, not a value)")
            else:
                target[path[-1]] = env[name]
    return overrides


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _validate(settings: Settings, problems: list[str]) -> None:
    if not settings.scheduler_names:
        problems.append("scheduler_names: at least one name is required")
    for name in settings.scheduler_names:
        if not _NAME_PATTERN.match(name):
            problems.append(f"scheduler_names: {name!r} is not a valid DNS subdomain name")
    positive = {
        "qps": settings.qps,
        "burst": settings.burst,
        "bind_workers": settings.bind_workers,
        "cycle_interval_s": settings.cycle_interval_s,
        "finished_run_idle_s": settings.finished_run_idle_s,
        "batch_timeout_s": settings.batch_timeout_s,
        "rest_max_body_bytes": settings.rest_max_body_bytes,
        "rest_max_items": settings.rest_max_items,
        "rest_max_task_body_bytes": settings.rest_max_task_body_bytes,
        "rest_threads": settings.rest_threads,
        "http_connection_limit": settings.http_connection_limit,
        "http_request_timeout_s": settings.http_request_timeout_s,
        "http_idle_timeout_s": settings.http_idle_timeout_s,
        "memory_save_interval_s": settings.memory_save_interval_s,
        "unschedulable_backoff_s": settings.unschedulable_backoff_s,
        "assumed_pod_ttl_s": settings.assumed_pod_ttl_s,
        "lease.duration_s": settings.lease.duration_s,
        "lease.renew_deadline_s": settings.lease.renew_deadline_s,
        "lease.retry_period_s": settings.lease.retry_period_s,
        "gangs.reserve_for_s": settings.gangs.reserve_for_s,
    }
    for key, value in positive.items():
        if not value > 0:
            problems.append(f"{key}: must be > 0, got {value}")
    for key, value in {
        "stale_pending_s": settings.stale_pending_s,
        "arrival_settle_s": settings.arrival_settle_s,
        "unschedulable_report_interval_s": settings.unschedulable_report_interval_s,
        "arrival_settle_max_s": settings.arrival_settle_max_s,
        "metrics_poll_s": settings.metrics_poll_s,
        "min_memory_bytes": settings.min_memory_bytes,
        "min_memory_per_cpu_bytes": settings.min_memory_per_cpu_bytes,
        "max_memory_bytes": settings.max_memory_bytes,
        "shrink_min_saving_bytes": settings.shrink_min_saving_bytes,
        "registration_grace_s": settings.registration_grace_s,
        "cws_execution_idle_s": settings.cws_execution_idle_s,
        "cws_state_save_interval_s": settings.cws_state_save_interval_s,
        "gangs.timeout_s": settings.gangs.timeout_s,
        "gangs.reserve_after_s": settings.gangs.reserve_after_s,
    }.items():
        if value < 0:
            problems.append(f"{key}: must be >= 0, got {value}")
    if not 0 < settings.grow_threshold < 1:
        problems.append(f"grow_threshold: must be in (0, 1), got {settings.grow_threshold}")
    if not (math.isfinite(settings.grow_factor) and settings.grow_factor > 1):
        problems.append(f"grow_factor: must be > 1, got {settings.grow_factor}")
    if settings.grow_max_times < 1:
        problems.append(f"grow_max_times: must be >= 1, got {settings.grow_max_times}")
    if settings.grow_max_memory_bytes < 0:
        problems.append(
            f"grow_max_memory_bytes: must be >= 0, got {settings.grow_max_memory_bytes}"
        )
    if settings.shrink_running and not settings.predictor:
        problems.append("shrink_running: needs a predictor (running tasks shrink to its plan)")
    if settings.grow_in_place and settings.metrics_poll_s <= 0:
        problems.append("grow_in_place: needs metrics_poll_s > 0 (usage comes from metrics)")
    if settings.max_memory_bytes and settings.max_memory_bytes < settings.min_memory_bytes:
        problems.append("max_memory_bytes: must be >= min_memory_bytes (or 0 for no cap)")
    if not settings.lease.renew_deadline_s < settings.lease.duration_s:
        problems.append("lease.renew_deadline_s: must be shorter than lease.duration_s")
    if not settings.lease.retry_period_s * 1.2 < settings.lease.renew_deadline_s:
        problems.append("lease.renew_deadline_s: must exceed 1.2 x lease.retry_period_s")
    for key, port in {"health_port": settings.health_port, "rest_port": settings.rest_port}.items():
        if not 0 <= port <= 65535:
            problems.append(f"{key}: {port} is not a TCP port")
    if settings.log_format not in _LOG_FORMATS:
        problems.append(f"log_format: {settings.log_format!r} is not one of {_LOG_FORMATS}")
    if settings.log_level.lower() not in _LOG_LEVELS:
        problems.append(f"log_level: {settings.log_level!r} is not one of {_LOG_LEVELS}")


def grow_policy(settings: Settings) -> grow.GrowPolicy:
    """The grow-in-place policy the ``grow_*`` settings describe.

    Raises:
        grow.GrowPolicyError: a parameter is out of range (``load_settings`` checks them all).
    """
    return grow.GrowPolicy(
        threshold=settings.grow_threshold,
        factor=settings.grow_factor,
        max_grows=settings.grow_max_times,
        max_limit_bytes=settings.grow_max_memory_bytes,
    )


def _yaml_error(exc: yaml.YAMLError) -> str:
    """Describe a YAML error by position and problem, never quoting the document."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or 'syntax error'}"
    return type(exc).__name__


def load_settings(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        path: YAML file (a mapping); ``None`` uses ``$WFSCHED_CONFIG`` if set, else defaults.
        env: environment to read overrides from (default ``os.environ``).

    Raises:
        SettingsError: listing every invalid, unknown or malformed key. Strategy and predictor
            names are validated by the caller against the registry.
    """
    environment = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = {}
    config_path = path or (
        Path(environment["WFSCHED_CONFIG"]) if "WFSCHED_CONFIG" in environment else None
    )
    if config_path is not None:
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SettingsError([f"{config_path}: cannot read ({exc.strerror})"]) from exc
        except UnicodeDecodeError as exc:
            raise SettingsError(
                [f"{config_path}: not UTF-8 text (byte {exc.start} cannot be decoded)"]
            ) from None
        except yaml.YAMLError as exc:
            # Only the position and the parser's verdict: the offending line may hold a secret.
            raise SettingsError([f"{config_path}: not valid YAML ({_yaml_error(exc)})"]) from None
        if not isinstance(loaded, Mapping):
            raise SettingsError([f"{config_path}: expected a mapping at the top level"])
        values = dict(loaded)
    values = _merge(values, _env_overrides(environment, problems))
    settings: Settings = _build(Settings, values, "", problems)
    if not problems:
        _validate(settings, problems)
    if problems:
        raise SettingsError(problems)
    return settings
