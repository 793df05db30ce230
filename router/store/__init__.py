"""Stores: the embedded memory store and Redis, behind one protocol."""

from __future__ import annotations

from router.store.base import Page, Store
from router.store.memory import MemoryStore

__all__ = ["MemoryStore", "Page", "Store", "open_store"]

# The URL schemes router.store.redis_client understands (kept here so that a
# memory-only gateway does not import redis-py).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


async def open_store(url: str, prefix: str = "fr") -> Store:
    if url in ("", "memory://", "memory"):
        return MemoryStore()
    if url.startswith(REDIS_SCHEMES):
        from router.store.redis import RedisStore

        return RedisStore.from_url(url, prefix)
    raise ValueError(
        f"unsupported store URL {url!r}: use memory://, redis://host:port/db, "
        "redis+sentinel://host:port[,host:port]/service[/db] or "
        "redis+cluster://host:port[,host:port]"
    )
