"""Pages bounded by bytes as well as by count.

A page of ``Limit`` items can be as large as ``Limit`` times the largest item
(1,000 flows with 31 KB definitions answered one 31 MB ListFlows), and an
answer is held in memory until its client has read it. So a page also stops
before the item that would take its items' encoded size past
:data:`PAGE_BYTES`, and carries a next token; it always holds at least one
item, so paging makes progress whatever the sizes. Callers already follow
next tokens: a page may have fewer items than ``Limit`` with more to come.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from router.store.base import Page

T = TypeVar("T")

PAGE_BYTES = 1024 * 1024  # encoded size of a page's items, about what its answer carries


def encoded_size(item: Any) -> int:
    """Bytes of ``item`` as JSON (dataclasses as objects): an estimate of its wire size."""
    return len(orjson.dumps(item, default=str, option=orjson.OPT_NON_STR_KEYS))


async def by_bytes(
    fetch: Callable[[int, str | None], Awaitable[Page[T]]],
    limit: int,
    token: str | None,
    budget: int = PAGE_BYTES,
) -> Page[T]:
    """``fetch(limit, token)``, cut short before the item that passes ``budget``.

    A cut page is read again with the smaller limit, so its next token is the
    store's own (tokens are the store's business, not this module's).
    """
    page = await fetch(limit, token)
    total = 0
    for count, item in enumerate(page.items):
        total += encoded_size(item)
        if total > budget and count > 0:
            return await fetch(count, token)
    return page
