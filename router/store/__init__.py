"""Stores: the embedded memory store and Redis, behind one protocol."""

from __future__ import annotations

from router.store.base import Page, Store
from router.store.memory import MemoryStore

__all__ = ["MemoryStore", "Page", "Store", "open_store"]


async def open_store(url: str, prefix: str = "fr") -> Store:
    if url in ("", "memory://", "memory"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from router.store.redis import RedisStore

        return RedisStore.from_url(url, prefix)
    raise ValueError(f"unsupported store URL {url!r}: use memory:// or redis://host:port/db")
