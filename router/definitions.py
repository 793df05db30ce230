"""The definitions versions were published with, as execution answers show them.

Versions are immutable, so a definition read once is cached for good, within a
byte budget per process (``--definition-cache-bytes``, least recently used first).
"""

from __future__ import annotations

from typing import Any

from router.errors import NotFound, Unavailable
from router.lru import ByteLRU
from router.model import Flow
from router.paging import encoded_size
from router.store.base import Store


class Definitions:
    def __init__(self, store: Store, budget_bytes: int) -> None:
        self._store = store
        self._cache: ByteLRU[tuple[str, str], Any] = ByteLRU(budget_bytes, encoded_size)

    async def of(self, flow: Flow, version: str) -> Any:
        """The definition ``version`` was published with (``None`` if it is gone).

        Also ``None`` when the flow is gone (deleted while the execution ran) or the
        store is unreachable: this is read after the execution has run, and an error
        now would tell the caller it did not run, or make it retry.
        """
        if not (version.isascii() and version.isdigit()):  # DRAFT: the flow itself
            return flow.definition
        key = (flow.id, version)
        if key in self._cache:
            return self._cache.get(key)
        try:
            found = await self._store.get_version(flow.id, int(version))
        except (NotFound, Unavailable):
            return None
        self._cache.put(key, found.definition)
        return found.definition
