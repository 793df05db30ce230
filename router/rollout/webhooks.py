"""The rollout's webhooks: ``event`` gets every phase or step change, ``confirm-promotion``
must answer 2xx before an automatic final promotion.

Both are POSTs of the status JSON with a bounded timeout. Event posts run in the
background (at most ``MAX_PENDING`` at once; more are dropped) so they never hold
a tick; a failure is logged and counted, never retried. A confirm-promotion hook
is asked on every tick until it answers 2xx: anything else (another status, a
timeout, a refused connection) leaves the rollout at its last step, with the
answer in its message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter

from router.rollout.state import Rollout

log = logging.getLogger("flow_router.rollout")

# Below the driver's lease (5 s), so a tick that waits on a confirm-promotion hook
# still renews it in time.
TIMEOUT_S = 3.0
MAX_PENDING = 100
HEADERS = {"Content-Type": "application/json", "User-Agent": "flow-router-rollout"}


class Webhooks:
    def __init__(self, registry: CollectorRegistry, timeout_s: float = TIMEOUT_S) -> None:
        self.failures = Counter(
            "flow_router_rollout_webhook_failures",
            "Rollout webhook calls that failed or did not answer 2xx, by type "
            "(event, confirm-promotion).",
            ["type"],
            registry=registry,
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def drain(self) -> None:
        """Wait for the event posts in flight (each is bounded by the timeout)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(self._pending)
        if self._session is not None:
            await self._session.close()

    async def _post(self, kind: str, url: str, status: dict[str, Any]) -> str | None:
        """None on a 2xx answer; otherwise what happened, for a message."""
        if self._session is None:
            return "webhooks are not started"
        try:
            async with self._session.post(url, data=orjson.dumps(status), headers=HEADERS) as r:
                await r.read()
                if 200 <= r.status < 300:
                    return None
                why = f"answered {r.status}"
        except TimeoutError:
            why = f"no answer within {self._timeout.total:g} s"
        except aiohttp.ClientError as e:
            why = f"failed: {type(e).__name__}"
        self.failures.labels(kind).inc()
        log.warning("rollout %s webhook %s %s", kind, url, why)
        return why

    def event(self, _before: Rollout | None, after: Rollout, status: dict[str, Any]) -> None:
        """A ``Rollouts`` listener: post the change to every event hook, in the background."""
        for hook in after.webhooks:
            if hook.type != "event":
                continue
            if len(self._pending) >= MAX_PENDING:
                self.failures.labels("event").inc()
                log.warning("rollout event webhook %s dropped: too many pending", hook.url)
                continue
            task = asyncio.get_running_loop().create_task(self._post("event", hook.url, status))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def confirm(self, r: Rollout, status: dict[str, Any]) -> str | None:
        """None when every confirm-promotion hook answered 2xx, else the first refusal."""
        for hook in r.webhooks:
            if hook.type == "confirm-promotion":
                why = await self._post("confirm-promotion", hook.url, status)
                if why is not None:
                    return f"{hook.url} {why}"
        return None
