"""Prometheus metrics, one registry per app (no global registry).

Label children are cached per (flow, alias, version), and per dialect by
(operation, status) and error code, so the hot path does a dict lookup and an
``inc()``, not a ``labels()`` call with its locking and tuple building.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Executor round trips: from sub-millisecond echo executors to long workflows.
_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip


class ExecutionMetrics:
    """The children one (flow, alias, version) path needs on every execution."""

    __slots__ = ("duration", "failed", "ok")

    def __init__(self, ok: Counter, failed: Counter, duration: Histogram) -> None:
        self.ok = ok
        self.failed = failed
        self.duration = duration


# Start to final status: from executions that end in the start call to long workflows.
_RUN_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400,
)  # fmt: skip


class OutcomeMetrics:
    """The final-status children of one (flow, alias, version), cached per status."""

    __slots__ = ("_key", "_results", "_statuses", "run_seconds")

    def __init__(self, key: tuple[str, str, str], results: Counter, run_seconds: Histogram) -> None:
        self._key = key
        self._results = results
        self._statuses: dict[str, Counter] = {}
        self.run_seconds = run_seconds

    def result(self, status: str) -> Counter:
        found = self._statuses.get(status)
        if found is None:
            found = self._statuses[status] = self._results.labels(*self._key, status)
        return found


class DialectMetrics:
    """One dialect's ``api_requests`` and ``errors`` children, cached as they appear.

    Bounded: operations are the dialect's own names (plus ``unknown``), statuses
    and error codes come from its fixed tables.
    """

    __slots__ = ("_codes", "_dialect", "_errors", "_requests", "_statuses")

    def __init__(self, dialect: str, requests: Counter, errors: Counter) -> None:
        self._dialect = dialect
        self._requests = requests
        self._errors = errors
        self._statuses: dict[str, dict[int, Counter]] = {}
        self._codes: dict[str, Counter] = {}

    def request(self, operation: str, status: int) -> Counter:
        by_status = self._statuses.get(operation)
        if by_status is None:
            by_status = self._statuses[operation] = {}
        found = by_status.get(status)
        if found is None:
            found = by_status[status] = self._requests.labels(self._dialect, operation, str(status))
        return found

    def error(self, code: str) -> None:
        found = self._codes.get(code)
        if found is None:
            found = self._codes[code] = self._errors.labels(self._dialect, code)
        found.inc()


class Metrics:
    """The gateway's metrics.

    With several workers (``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor
    before the workers start), each process writes its samples to files in that
    directory and a scrape of any worker renders the sum over all of them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.executions = Counter(
            "flow_router_executions",
            "Executions sent to an executor, by the version the gateway chose.",
            ["flow", "alias", "version", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "flow_router_execution_duration_seconds",
            "Executor round trip of an execution, per version.",
            ["flow", "version"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.alias_weight = Gauge(
            "flow_router_alias_weight",
            "Configured share of an alias's traffic per version (0..1).",
            ["flow", "alias", "version"],
            registry=self.registry,
            multiprocess_mode="mostrecent",  # every worker routes by the same config
        )
        self.api_requests = Counter(
            "flow_router_api_requests",
            "API requests answered, by dialect, action and result code.",
            ["dialect", "action", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "flow_router_errors",
            "Errors answered to callers, by dialect and the error code the caller "
            "got (CloudFlow's Code, Bedrock's x-amzn-ErrorType).",
            ["dialect", "error"],
            registry=self.registry,
        )
        self.cache_loads = Counter(
            "flow_router_route_cache_loads",
            "Flow snapshots read from the store into the route cache.",
            registry=self.registry,
        )
        self.cache_invalidations = Counter(
            "flow_router_route_cache_invalidations",
            "Flows dropped from the route cache, by what told us: feed (store "
            "announcement), local (a write through this process), check (periodic "
            "revision check).",
            ["source"],
            registry=self.registry,
        )
        self.cache_resyncs = Counter(
            "flow_router_route_cache_resyncs",
            "Change-feed (re)subscriptions, each followed by a full revision check.",
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "flow_router_route_cache_errors",
            "Route-cache reloads and revision checks that failed (store unreachable).",
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "flow_router_circuit_open",
            "1 while a version's circuit is open (executions fail fast, nothing is sent "
            "to its executor), else 0; with several workers, 1 if any worker's is open.",
            ["flow", "version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.executor_rejected = Counter(
            "flow_router_executor_rejected",
            "Executions answered with an error without calling the executor, by reason: "
            "overloaded (--max-inflight-per-version reached until the deadline), "
            "circuit_open (the version's circuit breaker).",
            ["flow", "version", "reason"],
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "flow_router_bad_requests",
            "Requests aiohttp's HTTP parser rejected (answered 400, logged as one line), "
            "by reason: method, request_line, url, too_long, header, body, framing, other.",
            ["reason"],
            registry=self.registry,
        )
        self.send_timeouts = Counter(
            "flow_router_send_timeouts",
            "Connections closed because the client read nothing of a large answer "
            "for --send-timeout seconds.",
            registry=self.registry,
        )
        self.auth_store_degraded = Counter(
            "flow_router_auth_store_degraded",
            "Signed requests decided without the store, which failed or did not answer "
            "within --auth-store-timeout (and for 1 s after), by check (nonce: shared replay "
            "protection, ratelimit) and decision (allowed or refused, per --auth-store-failure).",
            ["check", "decision"],
            registry=self.registry,
        )
        self.execution_results = Counter(
            "flow_router_execution_results",
            "Executions that reached a final status (Succeeded, Failed, TimedOut, Aborted), "
            "by the version that ran them; each counted once, by the replica whose store "
            "write made the transition.",
            ["flow", "alias", "version", "status"],
            registry=self.registry,
        )
        self.execution_run = Histogram(
            "flow_router_execution_run_seconds",
            "Seconds from an execution's start to its final status, per version.",
            ["flow", "alias", "version"],
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self._paths: dict[tuple[str, str, str], ExecutionMetrics] = {}
        self._outcomes: dict[tuple[str, str, str], OutcomeMetrics] = {}
        self._weights: dict[tuple[str, str], set[str]] = {}
        self._dialects: dict[str, DialectMetrics] = {}

    def path(self, flow: str, alias: str, version: str) -> ExecutionMetrics:
        key = (flow, alias, version)
        found = self._paths.get(key)
        if found is None:
            found = ExecutionMetrics(
                self.executions.labels(flow, alias, version, "success"),
                self.executions.labels(flow, alias, version, "error"),
                self.duration.labels(flow, version),
            )
            self._paths[key] = found
        return found

    def outcome(self, flow: str, alias: str, version: str) -> OutcomeMetrics:
        key = (flow, alias, version)
        found = self._outcomes.get(key)
        if found is None:
            found = OutcomeMetrics(key, self.execution_results, self.execution_run.labels(*key))
            self._outcomes[key] = found
        return found

    def dialect(self, name: str) -> DialectMetrics:
        found = self._dialects.get(name)
        if found is None:
            found = self._dialects[name] = DialectMetrics(name, self.api_requests, self.errors)
        return found

    def set_weights(self, flow: str, alias: str, shares: Iterable[tuple[str, float]]) -> None:
        """Publish an alias's configured split, dropping versions it no longer routes to."""
        shares = list(shares)
        current = {v for v, _ in shares}
        for stale in self._weights.get((flow, alias), set()) - current:
            self._drop_weight(flow, alias, stale)
        for version, share in shares:
            self.alias_weight.labels(flow, alias, version).set(share)
        self._weights[(flow, alias)] = current

    def forget_alias(self, flow: str, alias: str) -> None:
        for version in self._weights.pop((flow, alias), set()):
            self._drop_weight(flow, alias, version)

    def _drop_weight(self, *labels: str) -> None:
        if self.multiprocess:
            # Samples already written to the shared files cannot be removed;
            # NaN marks the series as no longer configured.
            self.alias_weight.labels(*labels).set(math.nan)
        with contextlib.suppress(KeyError):
            self.alias_weight.remove(*labels)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
