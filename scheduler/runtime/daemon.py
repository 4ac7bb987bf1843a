"""The composition root: settings → API client → informers → loop → leader election → HTTP.

``run_daemon`` wires the pieces and blocks until SIGTERM/SIGINT or the loss of leadership:

* informers (all pods, nodes) and the metrics poller feed one events queue from the start,
  so a standby replica keeps warm caches and takes over without a re-list;
* the ``SchedulerLoop`` runs on its own thread and binds only while this replica leads;
* leader election on a Lease: losing it stops binding at once and exits the process with
  status 1 (the Deployment restarts it as a standby);
* ``/healthz`` (the process and its loop thread are alive), ``/readyz`` (informers synced and
  the loop running) and ``/metrics`` (Prometheus) on ``health_port``;
* the CWS REST API (``scheduler.rest``) on ``rest_port``: its state is a task hook of the loop,
  its requests run on the loop thread, and its executions' strategies wrap the loop's policies;
* on taking the lease (or at start without election), a take-over thread restores the CWS
  executions the previous leader stored (``scheduler.rest.persist``), then accepts REST writes,
  then labels this replica's pod (``$POD_NAME``/``$POD_NAMESPACE``) so that the REST Service
  reaches it (``leaderpod``); the label is removed on shutdown and on losing the lease.

Both HTTP servers run on waitress with connection, thread and time limits
(``scheduler.runtime.httpserver``).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import exposition

from scheduler import cws, registry
from scheduler.cws import policies as cws_policies
from scheduler.kube import client as kube_client
from scheduler.kube import informer as kube_informer
from scheduler.kube import leader as kube_leader
from scheduler.kube import translate as kube_translate
from scheduler.rest import api as rest_api
from scheduler.rest import bridge as rest_bridge
from scheduler.rest import persist as rest_persist
from scheduler.rest import server as rest_server
from scheduler.runtime import history as history_mod
from scheduler.runtime import httpserver, leaderpod, pauses
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import memory as memory_mod
from scheduler.runtime import metrics as metrics_mod
from scheduler.runtime import settings as settings_mod

log = logging.getLogger(__name__)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on a small HTTP server with limits."""

    def __init__(
        self,
        *,
        address: str,
        port: int,
        metrics: metrics_mod.Metrics,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        limits: httpserver.HttpLimits | None = None,
    ) -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = str(environ.get("PATH_INFO") or "/")
            ctype = "text/plain"
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", b"only GET\n"
            elif path == "/metrics":
                status, body = "200 OK", exposition.generate_latest(metrics.registry)
                ctype = exposition.CONTENT_TYPE_LATEST
            elif path in ("/healthz", "/livez"):
                ok = healthy()
                status, body = ("200 OK", b"ok\n") if ok else ("503 Unavailable", b"unhealthy\n")
            elif path == "/readyz":
                ok = ready()
                status, body = ("200 OK", b"ok\n") if ok else ("503 Unavailable", b"not ready\n")
            else:
                status, body = "404 Not Found", b"not found\n"
            start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

        self._server = httpserver.HttpServer(
            app,
            address=address,
            port=port,
            limits=limits or httpserver.HttpLimits(threads=2, max_body_bytes=1024),
            name="health",
        )
        self.port: int = self._server.port

    def start(self) -> None:
        """Serve in a background thread."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()


class Daemon:
    """One wfsched replica; see the module docstring for its lifecycle."""

    def __init__(self, settings: settings_mod.Settings, *, kubeconfig: str | None) -> None:
        self.settings = settings
        spec = registry.parse_strategy(settings.policy)
        self.metrics = metrics_mod.Metrics()
        self.kube = kube_client.KubeClient.connect(
            kubeconfig,
            qps=settings.qps,
            burst=settings.burst,
            pool_size=settings.bind_workers + 4,
        )
        self.events: queue.Queue[Any] = queue.Queue()
        # Bindings and resizes go out only while this replica leads, checked after the rate
        # limiter granted them (a bind waiting for a token when the lease is lost is dropped).
        self.kube.write_guard = self._may_bind
        stored = self._stored_data(settings)
        self.memory = self._memory_model(settings, stored)
        self.history = self._history(stored)
        self.stop_event = threading.Event()
        self._leading = threading.Event()
        if not settings.lease.enabled:
            self._leading.set()
        self.loop = loop_mod.SchedulerLoop(
            settings=settings,
            kube=self.kube,
            policies=spec.build(memory_planner=self.memory),
            metrics=self.metrics,
            events=self.events,
            may_bind=self._may_bind,
            memory=self.memory,
            memory_store=(settings.lease.namespace, settings.memory_store_configmap),
            memory_save_interval_s=settings.memory_save_interval_s,
            history=self.history,
        )
        self._cws_ready = threading.Event()
        self.bridge: rest_bridge.CwsBridge | None = None
        self.persister: rest_persist.Persister | None = None
        self.leader_label = leaderpod.LeaderPodLabel.from_environment(
            self.kube, os.environ, value=settings.lease.name
        )
        self.rest = self._rest_server(settings)

        # One watch over every pod: pending pods of ours, accounting of all bound pods, and
        # the terminal transitions that count finished tasks per step.
        def count_restart(reason: str) -> None:
            self.metrics.watch_restarts.labels(reason=reason).inc()

        # Both keep only what the translation reads; finished pods shrink to their identity.
        self.informers = [
            kube_informer.Informer(
                self.kube,
                kube_informer.WatchSpec(name=loop_mod.POD_EVENTS, kind="pods"),
                self.events,
                on_restart=count_restart,
                transform=kube_translate.slim_pod,
                store=kube_translate.stored_pod,
                arrival_clock=time.monotonic,  # the loop's clock: per-stage latency metrics
            ),
            kube_informer.Informer(
                self.kube,
                kube_informer.WatchSpec(name=loop_mod.NODE_EVENTS, kind="nodes"),
                self.events,
                on_restart=count_restart,
                transform=kube_translate.slim_node,
            ),
        ]
        if settings.gangs.watch_pod_groups and _pod_groups_readable(self.kube):
            self.informers.append(
                kube_informer.Informer(
                    self.kube,
                    kube_informer.WatchSpec(name=loop_mod.POD_GROUP_EVENTS, kind="podgroups"),
                    self.events,
                    on_restart=count_restart,
                    transform=kube_translate.slim_pod_group,
                )
            )
        self.poller = (
            kube_informer.MetricsPoller(
                self.kube,
                self.events,
                interval_s=settings.metrics_poll_s,
                pods=self.memory is not None or settings.grow_in_place,
            )
            if settings.metrics_poll_s > 0
            else None
        )
        self._loop_thread = threading.Thread(
            target=self.loop.run, args=(self.stop_event,), name="wfsched-loop", daemon=True
        )
        self.health = HealthServer(
            address=settings.bind_address,
            port=settings.health_port,
            metrics=self.metrics,
            healthy=self._healthy,
            ready=self._ready,
            limits=self._http_limits(settings, threads=2, max_body_bytes=1024),
        )
        self.elector: kube_leader.LeaderElector | None = None
        if settings.lease.enabled:
            self.elector = kube_leader.LeaderElector(
                self.kube,
                kube_leader.LeaderElectionConfig(
                    namespace=settings.lease.namespace,
                    name=settings.lease.name,
                    lease_duration_s=settings.lease.duration_s,
                    renew_deadline_s=settings.lease.renew_deadline_s,
                    retry_period_s=settings.lease.retry_period_s,
                ),
                on_started_leading=self._on_started_leading,
                on_stopped_leading=self._on_stopped_leading,
            )

    def _stored_data(self, settings: settings_mod.Settings) -> Mapping[str, str]:
        """The store ConfigMap's data (empty when it is missing or cannot be read)."""
        try:
            stored = self.kube.get_configmap(
                settings.lease.namespace, settings.memory_store_configmap
            )
        except Exception:  # a missing store only costs what was learned
            log.warning("could not read the store ConfigMap", exc_info=True)
            return {}
        data = (stored or {}).get("data") or {}
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    @staticmethod
    def _history(stored: Mapping[str, str]) -> history_mod.WorkflowHistory:
        """The workflow history, restored from the store (or from an older store's runtimes)."""
        history = history_mod.WorkflowHistory()
        try:
            text = stored.get(history_mod.HISTORY_KEY)
            if text:
                restored = history.restore(text)
            elif stored.get(memory_mod.STORE_KEY):
                runtimes = memory_mod.stored_runtimes(stored[memory_mod.STORE_KEY])
                restored = history.import_runtimes(runtimes)
            else:
                return history
            log.info("restored %d runtimes and step edges of earlier runs", restored)
        except Exception:  # a broken history only costs what earlier runs taught
            log.warning("could not restore the workflow history", exc_info=True)
        return history

    def _memory_model(
        self, settings: settings_mod.Settings, stored: Mapping[str, str]
    ) -> memory_mod.MemoryModel | None:
        """Build the memory model and restore stored observations (none when scaling is off)."""
        if not settings.predictor:
            return None
        spec = registry.parse_predictor(settings.predictor)
        for warning in spec.warnings:
            log.warning("predictor %s: %s", settings.predictor, warning)
        model = memory_mod.MemoryModel(
            spec,
            floor_bytes=settings.min_memory_bytes,
            cap_bytes=settings.max_memory_bytes or None,
            floor_bytes_per_cpu=settings.min_memory_per_cpu_bytes,
            use_priors=settings.memory_priors,
        )
        try:
            text = stored.get(memory_mod.STORE_KEY)
            if text:
                restored = model.restore(text)
                log.info("restored %d memory observations", restored)
        except Exception:  # a broken store only costs the observations
            log.warning("could not restore memory observations", exc_info=True)
        return model

    @staticmethod
    def _http_limits(
        settings: settings_mod.Settings, *, threads: int, max_body_bytes: int
    ) -> httpserver.HttpLimits:
        return httpserver.HttpLimits(
            threads=threads,
            connection_limit=settings.http_connection_limit,
            request_timeout_s=settings.http_request_timeout_s,
            idle_timeout_s=settings.http_idle_timeout_s,
            max_body_bytes=max_body_bytes,
        )

    def _rest_server(self, settings: settings_mod.Settings) -> rest_server.RestServer | None:
        """The CWS REST API: its state, the loop's task hook, per-execution policies.

        The API token comes from ``$WFSCHED_API_TOKEN`` (never from the config file, never
        logged). Executions plan memory with their own predictors only when the loop's memory
        scaling is on (``predictor`` set), because only then does the loop resize pods.
        """
        if settings.rest_port == 0:
            return None
        state = cws.CwsState(
            workflows_registry=self.loop.registry,
            default_predictor=settings.predictor,
            min_memory_bytes=settings.min_memory_bytes,
            min_memory_per_cpu_bytes=settings.min_memory_per_cpu_bytes,
            max_memory_bytes=settings.max_memory_bytes,
            batch_timeout_s=settings.batch_timeout_s,
            registration_grace_s=settings.registration_grace_s,
            namespaces=settings.namespaces,
            adopt_unregistered=settings.adopt_unregistered_executions,
            idle_expiry_s=settings.cws_execution_idle_s,
        )
        if settings.cws_state_save_interval_s > 0:
            self.persister = rest_persist.Persister(
                rest_persist.StateStore(
                    self.kube, namespace=settings.lease.namespace, owner=settings.lease.name
                )
            )
        bridge = rest_bridge.CwsBridge(
            state,
            submit=self.loop.submit_command,
            clock=self.loop.clock,
            persister=self.persister,
            save_interval_s=settings.cws_state_save_interval_s or 1.0,
            may_persist=self._may_bind,
        )
        self.bridge = bridge
        self.loop.task_hooks.append(bridge)
        self.loop.policies = cws_policies.wrap(
            self.loop.policies,
            state,
            plan_memory=self.memory is not None,
            veto=self.memory.is_unscalable if self.memory is not None else None,
        )
        api = rest_api.Api(
            bridge=bridge,
            max_body_bytes=settings.rest_max_body_bytes,
            max_task_body_bytes=settings.rest_max_task_body_bytes,
            max_items=settings.rest_max_items,
            token=os.environ.get("WFSCHED_API_TOKEN") or None,
            may_write=self._may_write,
            leader=self._leader_identity,
        )
        return rest_server.RestServer(
            api,
            address=settings.bind_address,
            port=settings.rest_port,
            limits=self._http_limits(
                settings,
                threads=settings.rest_threads,
                max_body_bytes=max(settings.rest_max_body_bytes, settings.rest_max_task_body_bytes),
            ),
        )

    def _leader_identity(self) -> str | None:
        """The lease holder as last read (for followers' 503 replies), if known."""
        if self.elector is None:
            return None
        return self.elector.observed_holder or None

    def _may_write(self) -> bool:
        """Accept REST writes: leading, and the stored CWS executions are restored."""
        return self._cws_ready.is_set() and self._may_bind()

    def _take_over(self) -> None:
        """Become the REST API's leader: restore stored executions, accept writes, label the pod.

        Runs on its own thread (election callbacks must return at once). Writes are refused
        (503) until the executions are back, so no request sees a half-restored state.
        """
        if self.persister is not None and self.bridge is not None:
            self._restore_executions(self.persister, self.bridge)
        self._cws_ready.set()
        if self.leader_label is not None:
            self.leader_label.claim()

    def _restore_executions(
        self, persister: rest_persist.Persister, bridge: rest_bridge.CwsBridge
    ) -> None:
        for attempt in range(5):
            try:
                documents = persister.store.load()
                restored = bridge.restore(documents)
            except Exception as exc:  # API or loop trouble: try again, then go on without them
                log.warning("restoring CWS executions failed (attempt %d): %s", attempt + 1, exc)
                if self.stop_event.wait(1.0):
                    return
                continue
            log.info(
                "CWS executions restored",
                extra={"stored": len(documents), "restored": len(restored)},
            )
            return
        log.error("CWS executions not restored; their runs will get 400 from this replica")

    def _start_take_over(self) -> None:
        threading.Thread(target=self._take_over, name="wfsched-take-over", daemon=True).start()

    def _may_bind(self) -> bool:
        """Bind only while leading and the lease was renewed recently enough."""
        if not self._leading.is_set():
            return False
        return self.elector is None or self.elector.is_leader

    def _healthy(self) -> bool:
        return not self._loop_thread.ident or self._loop_thread.is_alive()

    def _ready(self) -> bool:
        return self._loop_thread.is_alive() and all(i.has_synced.is_set() for i in self.informers)

    def _on_started_leading(self) -> None:
        log.info("became leader; scheduling")
        self.metrics.leader.set(1)
        self._leading.set()
        self.loop.wake()  # a standby blocks on its events queue: start a cycle now
        if self.rest is not None or self.leader_label is not None:
            self._start_take_over()

    def _on_stopped_leading(self) -> None:
        # Stop binding before anything else, then leave: a fresh process rejoins as standby.
        self._leading.clear()
        self.metrics.leader.set(0)
        if self.stop_event.is_set():
            return  # graceful shutdown released the lease
        if self.leader_label is not None:  # best effort: the next leader removes it otherwise
            releaser = threading.Thread(target=self.leader_label.release, daemon=True)
            releaser.start()
            releaser.join(timeout=2.0)
        log.error("lost the scheduling lease; exiting")
        logging.shutdown()
        os._exit(1)

    def run(self) -> int:
        """Run until stopped; returns the process exit status."""
        pauses.tune(self.metrics)
        frozen = False
        self.health.start()
        for informer in self.informers:
            informer.start()
        if self.poller is not None:
            self.poller.start()
        self._loop_thread.start()
        if self.persister is not None:
            self.persister.start()
        if self.rest is not None:
            self.rest.start()
        if self.elector is not None:
            self.elector.start()
        else:
            self.metrics.leader.set(1)
            self._start_take_over()
        log.info(
            "wfsched started",
            extra={
                "scheduler_names": ",".join(self.settings.scheduler_names),
                "policy": self.settings.policy,
                "health_port": self.health.port,
                "rest_port": self.rest.port if self.rest is not None else 0,
                "leader_election": self.settings.lease.enabled,
            },
        )
        while not self.stop_event.wait(1.0):
            if not frozen and all(i.has_synced.is_set() for i in self.informers):
                frozen = True
                pauses.freeze()  # the start-up heap and the initial LISTs
            if not self._loop_thread.is_alive():
                log.error("scheduling loop died; exiting")
                return 1
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop binding and serving, store what was learned and the CWS changes, then stop."""
        was_leading = self._may_bind()
        self._leading.clear()
        self.stop_event.set()
        if self.leader_label is not None:
            self.leader_label.release()  # the Service stops routing here before the lease goes
        if self.rest is not None:
            self.rest.stop()
        self._loop_thread.join(timeout=10)
        if was_leading and not self._loop_thread.is_alive():
            # Before the lease goes: the next leader reads it all.
            self.loop.save_stores_now()
            if self.bridge is not None:
                self.bridge.save_final()
        if self.persister is not None:
            self.persister.stop()
        if self.elector is not None:
            self.elector.stop()
        for informer in self.informers:
            informer.stop()
        if self.poller is not None:
            self.poller.stop()
        self.health.stop()
        log.info("wfsched stopped")
        return 0


def run_daemon(settings: settings_mod.Settings, *, kubeconfig: str | None) -> int:
    """Start a replica and block until SIGTERM/SIGINT; returns the exit status."""
    daemon = Daemon(settings, kubeconfig=kubeconfig)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s received; shutting down", signal.Signals(signum).name)
        daemon.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    status = daemon.run()
    log.info("ran for %.1fs", time.monotonic() - started)
    return status


def _pod_groups_readable(kube: kube_client.KubeClient) -> bool:
    """True when PodGroups are served and this identity may list them (gangs by PodGroup).

    Checked once at start: an informer on a collection that is not served or not allowed
    would never sync and keep the replica unready.
    """
    try:
        if not kube.serves("podgroups"):
            log.info("PodGroups (scheduling.k8s.io/v1alpha2) not served; gangs by annotation only")
            return False
        kube.list_objects("podgroups", page_size=1)
    except Exception as exc:  # forbidden or unreachable: run without PodGroup gangs
        log.warning("PodGroups not readable (%s); gangs by annotation only", exc)
        return False
    return True
