"""The memory store's rollouts and leases (a mixin of ``MemoryStore``).

As in the rest of the memory store, no method awaits between its checks and its
writes, so each is atomic on the one event loop. Leases are in-process: one
gateway process drives every rollout of its memory store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from router.errors import AliasNotFound, RolloutActive, VersionNotFound
from router.model import Alias
from router.store.base import RolloutWrite, StoredRollout, routes_missing


def rollout_active(alias: str) -> RolloutActive:
    return RolloutActive(
        f"flow alias {alias} has an active rollout: its routes change only through the "
        "rollout until it finishes (abort it to change them by hand)"
    )


class MemoryRollouts:
    """Needs from the store: ``_state(flow_id)``, ``_changed(state)``, ``_clock``."""

    _clock: Callable[[], float]
    _rollouts: dict[tuple[str, str], StoredRollout]
    _leases: dict[str, tuple[str, float]]

    def _state(self, flow_id: str) -> Any: ...  # MemoryStore's (FlowNotFound)
    def _changed(self, state: Any) -> None: ...

    def _check_no_rollout(self, flow_id: str, alias: str) -> None:
        found = self._rollouts.get((flow_id, alias))
        if found is not None and found.active:
            raise rollout_active(alias)

    def _drop_rollouts(self, flow_id: str, alias: str | None = None) -> None:
        for key in [k for k in self._rollouts if k[0] == flow_id and alias in (None, k[1])]:
            del self._rollouts[key]

    async def get_rollout(self, flow_id: str, alias: str) -> tuple[Alias, StoredRollout | None]:
        found = self._state(flow_id).aliases.get(alias)
        if found is None:
            raise AliasNotFound(alias)
        return found, self._rollouts.get((flow_id, alias))

    async def write_rollout(self, flow_id: str, write: RolloutWrite, at: int) -> Alias | None:
        state = self._state(flow_id)
        alias: Alias | None = state.aliases.get(write.alias)
        if alias is None:
            raise AliasNotFound(write.alias)
        key = (flow_id, write.alias)
        current = self._rollouts.get(key)
        if (current.seq if current else 0) != write.seq or alias.revision != write.revision:
            return None
        if write.routes is not None:
            missing = routes_missing([r.version for r in write.routes], state.versions.keys())
            if missing is not None:
                raise VersionNotFound(str(missing))
            alias = replace(alias, routes=write.routes, updated_at=at, revision=alias.revision + 1)
            state.aliases[write.alias] = alias
            self._changed(state)
        self._rollouts[key] = StoredRollout(write.doc, write.seq + 1, write.active)
        return alias

    async def active_rollouts(self) -> list[tuple[str, str]]:
        return sorted(k for k, v in self._rollouts.items() if v.active)

    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        now = self._clock()
        current = self._leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._leases[name] = (holder, now + ttl_ms / 1000.0)
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        current = self._leases.get(name)
        if current is not None and current[0] == holder:
            del self._leases[name]
