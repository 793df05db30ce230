"""Wiring: build the aiohttp app from a Config. Nothing here is global.

Request routing on the one port (docs/wire.md §1):
``/`` → CloudFlow (RPC, dispatch on Action), ``/flows…`` → Bedrock (REST),
``/v1/…`` → flow-router's own API (rollouts, router/rollout/api; the
console's data, router/console/api), ``/console`` → the operator console,
``/metrics``, ``/healthz``, ``/readyz`` → operations, ``/_executor…`` → the
reference executor when no upstream is configured.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator

from aiohttp import web

from router import callbacks, console, executor, respond
from router.auth import VERIFIER, Verifier
from router.badrequests import ServerLog
from router.config import Config
from router.dialects import bedrock, cloudflow
from router.errors import Unavailable
from router.forward import Forwarder, UpstreamTemplate
from router.lifecycle.callback import Callbacks, CallbackTokens, resolve_secret
from router.lifecycle.poller import Poller
from router.limits import BODY_TIMEOUT
from router.metrics import CONTENT_TYPE, Metrics
from router.ratelimit import RateLimiter
from router.rollout import api as rollout_api
from router.rollout.wiring import rollouts_ctx
from router.service import Gateway
from router.store import Store, open_store

log = logging.getLogger("flow_router")

CONFIG = web.AppKey("config", Config)
GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", Metrics)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    try:
        await request.app[GATEWAY].store.ping()
    except Unavailable:
        # Unauthenticated: no hosts, ports or client internals (the store logs those).
        return web.json_response(
            {"status": "unavailable", "reason": "store unavailable"}, status=503
        )
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    return await respond.finish(request, response)


def make_app(config: Config, store: Store | None = None) -> web.Application:
    """The gateway app. ``store`` overrides ``config.store`` (tests pass one in)."""
    metrics = Metrics()
    app = web.Application(
        client_max_size=config.max_body_bytes,
        handler_args={"logger": ServerLog(metrics.bad_requests)},  # router/badrequests
    )
    app[CONFIG] = config
    app[respond.SENDING] = respond.Sending(config.send_timeout_s, metrics.send_timeouts)
    app[BODY_TIMEOUT] = config.body_timeout_s
    app[METRICS] = metrics
    apart = None  # with signed APIs, the unauthenticated reference executor gets its own port
    if config.upstream is None and config.credentials is not None:
        apart = executor.Apart(config.max_body_bytes)
    upstream = UpstreamTemplate(apart.template if apart else config.upstream_template())
    forwarder = Forwarder(config.timeouts, config.max_idle_per_host, config.version_limits, metrics)
    verifier = None
    if config.credentials is not None:
        verifier = Verifier(
            config.credentials,
            store_timeout_s=config.auth_store_timeout_s,
            store_failure=config.auth_store_failure,
            degraded=metrics.auth_store_degraded,
        )
    if verifier is not None:  # every API request must be signed (router/auth)
        app[VERIFIER] = verifier

    async def resources(app: web.Application) -> AsyncIterator[None]:
        owned = store is None
        opened = await open_store(config.store, config.key_prefix) if owned else store
        assert opened is not None
        await forwarder.start()
        pushed = None
        if config.callback_url is not None:
            secret = await resolve_secret(config.callback_secret, opened.shared_secret)
            pushed = Callbacks(config.callback_url, CallbackTokens(secret))
        gateway = Gateway(
            opened,
            forwarder,
            metrics,
            upstream,
            config.settings,
            random.Random(config.random_seed),
            idempotency_ttl_s=config.idempotency_ttl_s,
            callbacks=pushed,
        )
        app[GATEWAY] = gateway
        if verifier is not None:
            verifier.share_nonces(opened)
            if config.rate_limit is not None:
                burst = config.rate_burst or max(1, math.ceil(config.rate_limit))
                verifier.limiter = RateLimiter(opened, config.rate_limit, burst)
        if config.upstream is None:
            log.info("no --upstream given: forwarding to the built-in reference executor")
        follower = asyncio.create_task(gateway.cache.run(), name="route-cache")
        journal = asyncio.create_task(gateway.executions.journal.run(), name="journal")
        # A claimed poll is leased longer than its describe call can take.
        lease_ms = round((config.timeouts.total_s + 5) * 1000)
        poller = asyncio.create_task(Poller(gateway.executions, lease_ms).run(), name="poller")
        async with rollouts_ctx(app, gateway, metrics.registry):  # router/rollout
            yield
        # redis-py can swallow one cancellation inside a (re)subscribe
        # (asyncio.wait_for on 3.11), so cancel until the task has really ended.
        for task in (follower, poller):
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
        await gateway.executions.journal.close()  # SIGTERM loses no execution record
        await journal
        await forwarder.close()
        if owned:
            await opened.close()

    if apart is not None:
        app.cleanup_ctx.append(apart.serve)  # started before, stopped after the gateway
    app.cleanup_ctx.append(resources)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    callbacks.add_routes(app, GATEWAY)
    cloudflow.add_routes(app, GATEWAY, metrics)
    app[bedrock.SETTINGS] = bedrock.BedrockSettings(config.region, config.account_id)
    bedrock.add_routes(app, GATEWAY, metrics)
    # /console and /v1/console first: the rest of /v1 matches any path under it
    console.add_routes(app, GATEWAY, metrics, signed=config.credentials is not None)
    rollout_api.add_routes(app, metrics)  # /v1: flow-router's own API (rollouts)
    if config.upstream is None and apart is None:
        executor.add_routes(app)
    return app
