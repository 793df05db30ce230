"""How the app owns the rollout parts while its store is open: the use cases (``ROLLOUTS``),
their metrics and webhooks, the driver task, and the alias-delete hook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from router.rollout.controller import ROLLOUTS, Rollouts
from router.rollout.driver import Driver
from router.rollout.metrics import RolloutMetrics
from router.rollout.webhooks import Webhooks
from router.service import Gateway


@contextlib.asynccontextmanager
async def rollouts_ctx(
    app: web.Application, gateway: Gateway, registry: CollectorRegistry
) -> AsyncIterator[Rollouts]:
    rollouts = Rollouts(gateway.store)
    metrics = RolloutMetrics(registry)
    webhooks = Webhooks(registry)
    await webhooks.start()
    rollouts.listeners += [metrics.count_finished, webhooks.event]
    rollouts.confirm = webhooks.confirm
    gateway.before_alias_delete = rollouts.abort_before_delete
    app[ROLLOUTS] = rollouts
    driver = asyncio.create_task(Driver(rollouts, metrics).run(), name="rollout-driver")
    try:
        yield rollouts
    finally:
        while not driver.done():  # as the route cache's follower (router.app)
            driver.cancel()
            await asyncio.wait([driver], timeout=0.1)
        await webhooks.close()
