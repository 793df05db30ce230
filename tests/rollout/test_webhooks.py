"""Webhooks over real HTTP: ``event`` gets every phase and step change, and an automatic
final promotion waits until ``confirm-promotion`` answers 2xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from router.model import Route
from router.rollout.controller import Rollouts
from router.rollout.webhooks import Webhooks
from router.store.memory import MemoryStore
from tests.harness import free_port
from tests.rollout.test_controller import FAST, Clock, run
from tests.store.test_contract import an_alias, flow_with_versions


class Hooks:
    """A receiver on 127.0.0.1: records events; confirms with ``confirm_status``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.confirms = 0
        self.confirm_status = 503
        self.arrived = asyncio.Event()

    async def event(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        self.arrived.set()
        return web.Response(status=204)

    async def confirm(self, request: web.Request) -> web.Response:
        await request.json()
        self.confirms += 1
        return web.Response(status=self.confirm_status)

    async def events_reach(self, n: int) -> None:
        async with asyncio.timeout(30):
            while len(self.events) < n:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, str]]:
    receiver = Hooks()
    app = web.Application()
    app.router.add_post("/event", receiver.event)
    app.router.add_post("/confirm", receiver.confirm)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield receiver, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_confirm_promotion_holds_until_2xx_and_events_follow(
    hooks: tuple[Hooks, str],
) -> None:
    receiver, url = hooks
    store = MemoryStore()
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    clock = Clock()
    registry = CollectorRegistry()
    webhooks = Webhooks(registry, timeout_s=5)
    await webhooks.start()
    rollouts = Rollouts(store, clock)
    rollouts.listeners.append(webhooks.event)
    rollouts.confirm = webhooks.confirm
    try:
        body = {
            **FAST,
            "targetVersion": "2",
            "stepWeights": [10],
            "webhooks": [
                {"type": "event", "url": f"{url}/event"},
                {"type": "confirm-promotion", "url": f"{url}/confirm"},
            ],
        }
        await rollouts.start("orders", "live", body)
        await run(store, flow.id, "live", "2", 20, 0)
        clock.t += 30
        for _ in range(2):
            o = await rollouts.reconcile(flow.id, "live")
            assert o is not None
            status = o.status()
            assert status["phase"] == "Progressing"
            assert "confirm-promotion" in status["message"] and "503" in status["message"]
        assert receiver.confirms == 2  # asked on every tick until it agrees
        assert (await store.get_alias(flow.id, "live")).routes == (Route(1, 90), Route(2, 10))
        failures = registry.get_sample_value(
            "flow_router_rollout_webhook_failures_total", {"type": "confirm-promotion"}
        )
        assert failures == 2

        receiver.confirm_status = 200
        o = await rollouts.reconcile(flow.id, "live")
        assert o is not None and o.status()["phase"] == "Succeeded"
        assert (await store.get_alias(flow.id, "live")).routes == (Route(2, 100),)
        await receiver.events_reach(2)
        assert [e["phase"] for e in receiver.events] == ["Progressing", "Succeeded"]
        assert receiver.events[-1]["canaryWeight"] == 100
        assert receiver.events[-1]["counts"]["2"]["executions"] == 20
    finally:
        await webhooks.close()


async def test_an_unreachable_event_hook_is_counted_and_blocks_nothing() -> None:
    store = MemoryStore()
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    registry = CollectorRegistry()
    webhooks = Webhooks(registry, timeout_s=5)
    await webhooks.start()
    rollouts = Rollouts(store)
    rollouts.listeners.append(webhooks.event)
    dead = f"http://127.0.0.1:{free_port()}/event"  # nothing listens there
    try:
        body = {"targetVersion": "2", "webhooks": [{"type": "event", "url": dead}]}
        status = await rollouts.start("orders", "live", body)
        assert status["phase"] == "Progressing"
        await webhooks.drain()
        failures = registry.get_sample_value(
            "flow_router_rollout_webhook_failures_total", {"type": "event"}
        )
        assert failures == 1
    finally:
        await webhooks.close()
