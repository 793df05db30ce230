"""The bound on a signed request's store calls: timeout, back-off, decision, metric, flags."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter

from router import cli
from router.auth.guard import Backoff, StoreGuard
from router.errors import Throttled, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """Stands in for a store call: answers, fails, or never answers, as told."""

    def __init__(self) -> None:
        self.calls = 0
        self.mode = "answer"

    async def __call__(self) -> str:
        self.calls += 1
        if self.mode == "fail":
            raise Unavailable("connection refused")
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "throttle":
            raise Throttled("over its rate", retry_after_s=1.0)
        return "stored"


def _guard(failure: str, clock: Clock) -> tuple[StoreGuard, CollectorRegistry]:
    registry = CollectorRegistry()
    counter = Counter("degraded", "d", ["check", "decision"], registry=registry)
    guard = StoreGuard(
        "nonce", timeout_s=0.01, failure=failure, degraded=counter, retry_s=1.0, clock=clock
    )
    return guard, registry


def _count(registry: CollectorRegistry, decision: str) -> float:
    labels = {"check": "nonce", "decision": decision}
    return registry.get_sample_value("degraded_total", labels) or 0.0


async def test_fail_open_backs_off_then_asks_again() -> None:
    clock, store = Clock(), Store()
    guard, registry = _guard("open", clock)
    assert await guard.call(store) == "stored"
    store.mode = "hang"
    assert await guard.call(store) is None  # the timeout ran out: let in
    store.mode = "fail"
    for _ in range(5):  # within the back-off: the store is not asked
        assert await guard.call(store) is None
    assert (store.calls, _count(registry, "allowed")) == (2, 6)
    clock.now += 1.0
    store.mode = "answer"
    assert await guard.call(store) == "stored"  # asked again after the back-off
    assert store.calls == 3


async def test_fail_closed_refuses_and_lets_the_store_decide_otherwise() -> None:
    clock, store = Clock(), Store()
    guard, registry = _guard("closed", clock)
    store.mode = "throttle"
    with pytest.raises(Throttled):  # the store's own answer goes through, not counted
        await guard.call(store)
    store.mode = "fail"
    for _ in range(3):
        with pytest.raises(Unavailable, match="replay protection"):
            await guard.call(store)
    assert (store.calls, _count(registry, "refused"), _count(registry, "allowed")) == (2, 3, 0)


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = cli.config_from_args(cli._parser().parse_args(["serve"]))
    assert (config.auth_store_timeout_s, config.auth_store_failure) == (0.25, "open")
    args = ["serve", "--auth-store-timeout", "0.05", "--auth-store-failure", "closed"]
    config = cli.config_from_args(cli._parser().parse_args(args))
    assert (config.auth_store_timeout_s, config.auth_store_failure) == (0.05, "closed")
    monkeypatch.setenv("FLOW_ROUTER_AUTH_STORE_FAILURE", "closed")
    monkeypatch.setenv("FLOW_ROUTER_AUTH_STORE_TIMEOUT", "0.5")
    config = cli.config_from_args(cli._parser().parse_args(["serve"]))
    assert (config.auth_store_timeout_s, config.auth_store_failure) == (0.5, "closed")
    monkeypatch.setenv("FLOW_ROUTER_AUTH_STORE_FAILURE", "maybe")
    with pytest.raises(ValueError, match="--auth-store-failure must be one of open, closed"):
        cli.config_from_args(cli._parser().parse_args(["serve"]))
    monkeypatch.delenv("FLOW_ROUTER_AUTH_STORE_FAILURE")
    with pytest.raises(ValueError, match="--auth-store-timeout must be positive"):
        cli.config_from_args(cli._parser().parse_args(["serve", "--auth-store-timeout", "0"]))


async def test_checks_share_the_back_off() -> None:
    """One store: once the nonce write failed, the rate limit does not wait for it too."""
    clock, backoff = Clock(), Backoff()
    nonce = StoreGuard("nonce", timeout_s=0.01, backoff=backoff, clock=clock)
    ratelimit = StoreGuard("ratelimit", timeout_s=0.01, backoff=backoff, clock=clock)
    nonces, buckets = Store(), Store()
    nonces.mode = "hang"
    assert await nonce.call(nonces) is None
    assert await ratelimit.call(buckets) is None
    assert (nonces.calls, buckets.calls) == (1, 0)
