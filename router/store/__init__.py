"""Stores: the embedded memory store and Redis, behind one protocol."""

from __future__ import annotations

from router.store.base import Page, Store
from router.store.memory import MemoryStore

__all__ = ["MemoryStore", "Page", "Store", "is_in_process_url", "open_store", "redact_url"]

MEMORY_URLS = ("", "memory", "memory://")
# The URL schemes router.store.redis_client understands (kept here so that a
# memory-only gateway does not import redis-py).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


def is_in_process_url(url: str) -> bool:
    """Whether ``url`` names a store that lives in one process (``Store.in_process``).

    For callers that only have the URL, before any store is opened (the
    worker count, the CLI's checks). Raises ``ValueError`` for a URL no store
    understands.
    """
    if url in MEMORY_URLS:
        return True
    if url.startswith(REDIS_SCHEMES):
        return False
    raise ValueError(
        f"unsupported store URL {url!r}: use memory://, redis://host:port/db, "
        "redis+sentinel://host:port[,host:port]/service[/db] or "
        "redis+cluster://host:port[,host:port]"
    )


async def open_store(url: str, prefix: str = "fr") -> Store:
    if is_in_process_url(url):
        return MemoryStore()
    from router.store.redis import RedisStore

    return RedisStore.from_url(url, prefix)


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, fit for a log line.

    Covers ``[user]:password@`` in every form (one server, ``unix://``,
    Sentinel, Cluster) and ``password`` options in the query string
    (``password``, ``sentinel_password``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    main, question, query = rest.partition("?")
    if "@" in main:
        # The last "@": hosts and database numbers have none, and a password
        # may hold an unencoded "/" or "@".
        userinfo, _, after = main.rpartition("@")
        user, colon, _secret = userinfo.partition(":")
        main = f"{user}:***@{after}" if colon else f"{user}@{after}"
    if question:
        pairs = []
        for pair in query.split("&"):
            name, equals, _value = pair.partition("=")
            pairs.append(f"{name}=***" if equals and "password" in name.lower() else pair)
        query = "&".join(pairs)
    return f"{scheme}://{main}{question}{query}"
