"""Compiled aliases: what the hot path needs, built once per alias revision."""

from __future__ import annotations

from dataclasses import dataclass

from router.metrics import Metrics
from router.model import Alias, Flow
from router.sampler import AliasTable


@dataclass(frozen=True, slots=True)
class CompiledAlias:
    flow: Flow
    alias: Alias
    table: AliasTable
    versions: tuple[str, ...]  # outcome index -> version string

    @property
    def revision(self) -> int:
        return self.alias.revision

    def pick(self, u: float) -> str:
        return self.versions[self.table.sample(u)]

    def pick_for_key(self, key: bytes) -> str:
        return self.versions[self.table.sample_key(key)]


def compile_alias(flow: Flow, alias: Alias, metrics: Metrics) -> CompiledAlias:
    """Build the sampling table and publish the configured split as gauges."""
    compiled = CompiledAlias(
        flow=flow,
        alias=alias,
        table=AliasTable([r.weight for r in alias.routes]),
        versions=tuple(str(r.version) for r in alias.routes),
    )
    metrics.set_weights(flow.name, alias.name, ((str(v), s) for v, s in alias.shares().items()))
    return compiled


class AliasCache:
    """Compiled aliases by (flow id, alias name), replaced when the revision moves."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._entries: dict[tuple[str, str], CompiledAlias] = {}

    def get(self, flow: Flow, alias: Alias) -> CompiledAlias:
        key = (flow.id, alias.name)
        found = self._entries.get(key)
        if found is None or found.revision != alias.revision or found.flow.name != flow.name:
            found = compile_alias(flow, alias, self._metrics)
            self._entries[key] = found
        return found

    def drop(self, flow: Flow, alias_name: str) -> None:
        self._entries.pop((flow.id, alias_name), None)
        self._metrics.forget_alias(flow.name, alias_name)

    def drop_flow(self, flow: Flow) -> None:
        for key in [k for k in self._entries if k[0] == flow.id]:
            self.drop(flow, key[1])
