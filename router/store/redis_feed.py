"""The Redis store's change feed: a pub/sub subscriber that survives reconnects.

Every write that bumps a flow's revision publishes the flow id on
``P:changes`` (``router.store.redis_codec``). Messages published while the
subscriber is disconnected are lost, so every (re)subscription, redis-py's own
silent reconnections included, is reported as a resync: the route cache then
re-checks the revisions of what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection

from router.store.redis_client import UNREACHABLE, Clients, defaults

log = logging.getLogger("flow_router.store")

_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0


class ChangeFeed:
    """Follows one channel through ``clients``; on a cluster, through one node at a time."""

    def __init__(self, clients: Clients, channel: str) -> None:
        self._clients = clients
        self._channel = channel
        self._subscriptions = 0  # cluster: which node the next subscriber tries

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        """Deliver changes until cancelled; call ``on_resync`` on every (re)subscription."""
        backoff = _FIRST_BACKOFF_S
        while True:
            pubsub: PubSub | None = None
            node: redis.asyncio.Redis | None = None
            resync = _Resync(on_resync)
            try:
                pubsub, node = await self._subscriber()
                await pubsub.subscribe(self._channel)
                _honour_cancellation()
                if pubsub.connection is not None:
                    pubsub.connection.register_connect_callback(resync.connected)
                on_resync()
                backoff = _FIRST_BACKOFF_S
                await _follow(pubsub, on_change)
            except UNREACHABLE as e:
                log.warning("change feed lost (%s); resubscribing in %.2fs", e, backoff)
            finally:
                if pubsub is not None:
                    if pubsub.connection is not None:
                        pubsub.connection.deregister_connect_callback(resync.connected)
                    with contextlib.suppress(*UNREACHABLE):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                if node is not None:
                    with contextlib.suppress(*UNREACHABLE):
                        await node.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _subscriber(self) -> tuple[PubSub, redis.asyncio.Redis | None]:
        """A PubSub for the change feed, and the client it owns, if any.

        On a cluster: a plain connection to one node, the next one on every
        resubscription, so a node that is down is not tried forever. PUBLISH is
        broadcast to every node, so any node hears every change.
        """
        client = self._clients.client
        if not isinstance(client, RedisCluster):
            return client.pubsub(ignore_subscribe_messages=True), None
        await client.initialize()
        nodes = client.get_nodes()
        node = nodes[self._subscriptions % len(nodes)]
        self._subscriptions += 1
        options = self._clients.node_options or defaults()
        plain = redis.asyncio.Redis(host=node.host, port=int(node.port), **options)
        return plain.pubsub(ignore_subscribe_messages=True), plain


class _Resync:
    """Holds the resync callback: redis-py keeps connect callbacks as weak methods."""

    def __init__(self, on_resync: Callable[[], None]) -> None:
        self._on_resync = on_resync

    def connected(self, connection: AbstractConnection) -> None:
        self._on_resync()


async def _follow(pubsub: PubSub, on_change: Callable[[str], None]) -> None:
    # Wakes up every second rather than blocking for good, so that a swallowed
    # cancellation (see _honour_cancellation) still ends the loop.
    while True:
        _honour_cancellation()
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            on_change(message["data"].decode())


def _honour_cancellation() -> None:
    """Raise ``CancelledError`` if this task was cancelled but the error never arrived.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py uses to send commands)
    drops a cancellation that lands as the operation completes, so a
    cancelled ``subscribe`` can return normally.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
