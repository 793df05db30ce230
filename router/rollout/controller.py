"""Use cases of the rollout API (``/v1/flows/{flow}/aliases/{alias}/rollout``), and the
driver's reconcile.

The HTTP layer (router/rollout/api.py) parses and renders; this module checks the
request against the store and makes the one atomic write each action needs: the
rollout document and the alias's routes together (``Store.write_rollout``), as a
compare-and-set on what it read, so an API action and the driver's tick racing
on one rollout never both apply. Every answer is the status JSON
(``router.rollout.state.status_json``).

Errors: ``FlowNotFound``/``AliasNotFound``/``VersionNotFound`` (404),
``RolloutNotFound`` (404, the alias never had a rollout), ``InvalidArgument`` (400,
``field`` in camelCase), ``RolloutActive`` (409, start while one is active),
``RolloutFinished`` (409, an action on a finished rollout), ``Unavailable`` (503).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from router.errors import (
    AliasNotFound,
    Conflict,
    FlowNotFound,
    InvalidArgument,
    RolloutActive,
    RolloutFinished,
    RolloutNotFound,
)
from router.model import Flow
from router.rollout import body as request_body
from router.rollout import state as st
from router.rollout.decision import (
    Action,
    Phase,
    RolloutSpec,
    RolloutState,
    StepCounts,
    Verdict,
    decide,
)
from router.rollout.state import HistoryEntry, Rollout, VersionCounts
from router.rollout.traffic import (
    baseline_of,
    promoted_routes,
    step_counts,
    step_routes,
    version_counts,
)
from router.store.base import RolloutWrite, Store, StoredRollout

log = logging.getLogger("flow_router.rollout")

MAX_ATTEMPTS = 20  # compare-and-set retries of one action
# (rollout before, rollout after, status after): called after every write that
# changed the phase, step or weight, on the replica that made it.
Listener = Callable[[Rollout | None, Rollout, dict[str, Any]], None]
# Asked before an automatic final promotion: None to go ahead, or why not.
Confirm = Callable[[Rollout, dict[str, Any]], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Observed:
    """A rollout as read, with the counts of its steps and the live verdict."""

    rollout: Rollout
    seq: int
    revision: int  # the alias's
    counts: dict[str, VersionCounts]  # the current step's, per version
    verdict: Verdict | None  # None once finished

    def status(self) -> dict[str, Any]:
        r, v = self.rollout, self.verdict
        if v is None:
            return st.status_json(r, r.final_counts, r.evidence, r.message)
        # The live message while analysing; a held phase keeps the reason it was held for.
        live = r.phase is Phase.PROGRESSING and v.action is Action.HOLD
        return st.status_json(r, self.counts, v.evidence, v.message if live else r.message)


class Rollouts:
    """Use cases of the rollout API; the app holds one under ``ROLLOUTS`` (router.app)."""

    def __init__(self, store: Store, clock: Callable[[], float] = st.now) -> None:
        self.store = store
        self.clock = clock
        self.listeners: list[Listener] = []
        self.confirm: Confirm | None = None

    # -- the API --------------------------------------------------------------------
    async def start(self, flow_name: str, alias: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start a rollout of ``alias`` to ``body["targetVersion"]``: 201 with the status."""
        spec, hooks = request_body.parse(body)
        target = int(spec.target_version)
        for _ in range(MAX_ATTEMPTS):
            flow = await self.store.get_flow(flow_name)
            current, stored = await self.store.get_rollout(flow.id, alias)
            if stored is not None and stored.active:
                raise RolloutActive(
                    f"flow alias {alias} already has an active rollout: "
                    "promote, wait for or abort it first"
                )
            await self.store.get_version(flow.id, target)
            if sum(r.weight for r in baseline_of(current.routes, target)) <= 0:
                raise InvalidArgument(
                    f"flow alias {alias} routes no traffic to a version other than "
                    f"{target}: there is no baseline to roll out from",
                    "targetVersion",
                )
            t = self.clock()
            weight = spec.step_weights[0]
            message = f"started: step 1/{len(spec.step_weights)} ({weight}%) to version {target}"
            r = Rollout(
                flow_id=flow.id,
                flow=flow.name,
                alias=alias,
                spec=spec,
                baseline=current.routes,
                phase=Phase.PROGRESSING,
                step=0,
                canary_weight=weight,
                step_started_at=t,
                step_revisions=(current.revision + 1,),
                started_at=t,
                updated_at=t,
                message=message,
                webhooks=hooks,
                history=(HistoryEntry(t, Phase.PROGRESSING, 0, weight, message),),
            )
            routes = step_routes(current.routes, target, weight)
            # Before the first step's routes: its executions are judged slow from the start.
            await self.store.set_slow_threshold(flow.id, alias, slow_threshold_ms(spec))
            write = RolloutWrite(alias, stored.seq if stored else 0, current.revision, b"", True)
            if await self._write(r, replace(write, routes=routes), None, {}):
                return (await self.observe(flow.id, alias)).status()
        raise _busy(alias)

    async def status(self, flow_name: str, alias: str) -> dict[str, Any]:
        """The status of the alias's current or last rollout; ``RolloutNotFound`` if none."""
        flow = await self.store.get_flow(flow_name)
        return (await self.observe(flow.id, alias)).status()

    async def promote(self, flow_name: str, alias: str, full: bool) -> dict[str, Any]:
        """Skip the analysis of the current step (``full``: go straight to 100%)."""

        def act(o: Observed, t: float) -> tuple[Rollout, bool] | None:
            r = o.rollout
            last = r.step + 1 >= len(r.spec.step_weights)
            if full or last or r.phase is Phase.WAITING_PROMOTION:
                return self._promoted(o, t, "promoted by request"), True
            step = r.step + 1
            weight = r.spec.step_weights[step]
            return self._advanced(o, t, step, f"advanced to {weight}% by request"), True

        return await self._act(flow_name, alias, act)

    async def pause(self, flow_name: str, alias: str) -> dict[str, Any]:
        def act(o: Observed, t: float) -> tuple[Rollout, bool] | None:
            if o.rollout.phase is Phase.PAUSED:
                return None
            where = _where(o.rollout)
            return o.rollout.moved(t, Phase.PAUSED, f"paused by request at {where}"), False

        return await self._act(flow_name, alias, act)

    async def resume(self, flow_name: str, alias: str) -> dict[str, Any]:
        """Paused → Progressing; the step's timers start again, its counts are kept."""

        def act(o: Observed, t: float) -> tuple[Rollout, bool] | None:
            r = o.rollout
            if r.phase is not Phase.PAUSED:
                return None
            moved = r.moved(t, Phase.PROGRESSING, f"resumed by request at {_where(r)}")
            return replace(moved, step_started_at=t), False

        return await self._act(flow_name, alias, act)

    async def abort(self, flow_name: str, alias: str) -> dict[str, Any]:
        """Restore the routes from before the rollout in one write: phase Aborted."""

        def act(o: Observed, t: float) -> tuple[Rollout, bool] | None:
            message = f"aborted by request at {_where(o.rollout)}; routes restored"
            return self._restored(o, t, Phase.ABORTED, message), True

        return await self._act(flow_name, alias, act)

    async def abort_before_delete(self, flow: Flow, alias: str) -> None:
        """The Gateway's hook before DeleteFlowAlias: abort the alias's active rollout."""
        try:
            o = await self.observe(flow.id, alias)
        except (AliasNotFound, RolloutNotFound):
            return  # the delete answers for a missing alias itself
        if o.verdict is not None:
            with contextlib.suppress(RolloutFinished):  # finished meanwhile
                await self.abort(flow.name, alias)

    # -- the driver's tick ------------------------------------------------------------
    async def observe(self, flow_id: str, alias: str) -> Observed:
        """Read the rollout, its counts and the verdict the rule gives now."""
        current, stored = await self.store.get_rollout(flow_id, alias)
        if stored is None:
            raise RolloutNotFound(alias)
        return await self._observed(stored, current.revision)

    async def reconcile(self, flow_id: str, alias: str) -> Observed | None:
        """Apply the rule's verdict once (idempotent); the rollout after, or None if gone."""
        for _ in range(MAX_ATTEMPTS):
            try:
                o = await self.observe(flow_id, alias)
            except (FlowNotFound, AliasNotFound, RolloutNotFound):
                return None
            v = o.verdict
            if v is None:
                return o
            t = self.clock()
            new, routed = await self._apply(o, v, t)
            if new is None:
                return o
            if await self._write_observed(o, new, routed, t):
                return await self.observe(flow_id, alias)
        raise _busy(alias)

    async def _apply(self, o: Observed, v: Verdict, t: float) -> tuple[Rollout | None, bool]:
        r = o.rollout
        if v.action is Action.ROLLBACK:
            return self._restored(o, t, Phase.ROLLED_BACK, v.message, v.evidence), True
        if v.action is Action.ADVANCE:
            return self._advanced(o, t, v.step, v.message, v.evidence), True
        if v.action is Action.PAUSE:
            return r.moved(t, Phase.PAUSED, v.message, evidence=v.evidence), False
        if v.action is Action.WAIT_PROMOTION and r.phase is Phase.PROGRESSING:
            return r.moved(t, Phase.WAITING_PROMOTION, v.message, evidence=v.evidence), False
        if v.action is Action.PROMOTE:
            why_not = await self.confirm(r, o.status()) if self.confirm else None
            if why_not is None:
                return self._promoted(o, t, v.message, v.evidence), True
            message = f"waiting for the confirm-promotion webhook ({why_not}): {v.message}"
            if message != r.message:  # written once, not every tick
                return r.moved(t, r.phase, message, evidence=v.evidence), False
        return None, False

    # -- transitions ------------------------------------------------------------------
    def _advanced(
        self, o: Observed, t: float, step: int, message: str, evidence: float | None = None
    ) -> Rollout:
        r = o.rollout
        weight = r.spec.step_weights[step]
        moved = r.moved(
            t, Phase.PROGRESSING, message, step=step, canary_weight=weight, evidence=evidence
        )
        revisions = (*r.step_revisions, o.revision + 1)
        return replace(moved, step_started_at=t, step_revisions=revisions)

    def _promoted(
        self, o: Observed, t: float, message: str, evidence: float | None = None
    ) -> Rollout:
        moved = o.rollout.moved(t, Phase.SUCCEEDED, message, canary_weight=100, evidence=evidence)
        return replace(moved, final_counts=o.counts)

    def _restored(
        self, o: Observed, t: float, phase: Phase, message: str, evidence: float | None = None
    ) -> Rollout:
        moved = o.rollout.moved(t, phase, message, canary_weight=0, evidence=evidence)
        return replace(moved, final_counts=o.counts)

    # -- reads and writes ---------------------------------------------------------------
    async def _observed(self, stored: StoredRollout, revision: int) -> Observed:
        r = st.decode(stored.doc)
        if not r.active:
            return Observed(r, stored.seq, revision, r.final_counts, None)
        outcomes = await self.store.outcome_counts(r.flow_id)
        per_step = [version_counts(outcomes, r.alias, rev) for rev in r.step_revisions]
        finished = tuple(step_counts(c, r.target) for c in per_step[:-1])
        state = RolloutState(r.phase, r.step, r.step_started_at, finished)
        current: StepCounts = step_counts(per_step[-1], r.target)
        verdict = decide(r.spec, state, current, self.clock())
        return Observed(r, stored.seq, revision, per_step[-1], verdict)

    async def _act(
        self,
        flow_name: str,
        alias: str,
        act: Callable[[Observed, float], tuple[Rollout, bool] | None],
    ) -> dict[str, Any]:
        for _ in range(MAX_ATTEMPTS):
            flow = await self.store.get_flow(flow_name)
            o = await self.observe(flow.id, alias)
            if o.verdict is None:
                raise RolloutFinished(
                    f"the rollout of flow alias {alias} has finished ({o.rollout.phase.value})"
                )
            t = self.clock()
            change = act(o, t)
            if change is None:
                return o.status()
            new, routed = change
            if await self._write_observed(o, new, routed, t):
                return (await self.observe(flow.id, alias)).status()
        raise _busy(alias)

    async def _write_observed(self, o: Observed, new: Rollout, routed: bool, t: float) -> bool:
        routes = None
        if routed:
            target = int(new.target)
            if new.phase is Phase.SUCCEEDED:
                routes = promoted_routes(target)
            elif not new.active:
                routes = new.baseline
            else:
                routes = step_routes(new.baseline, target, new.canary_weight)
        write = RolloutWrite(new.alias, o.seq, o.revision, b"", new.active, routes)
        counts = new.final_counts if not new.active else o.counts
        return await self._write(new, write, o.rollout, counts)

    async def _write(
        self,
        r: Rollout,
        write: RolloutWrite,
        before: Rollout | None,
        counts: dict[str, VersionCounts],
    ) -> bool:
        doc = replace(write, doc=st.encode(r))
        if await self.store.write_rollout(r.flow_id, doc, round(r.updated_at * 1000)) is None:
            return False
        slow = r.spec.analysis.slow_seconds is not None
        if slow and before is not None and before.active and not r.active:
            await self.store.set_slow_threshold(r.flow_id, r.alias, None)
        if before is None or r.history[-1:] != before.history[-1:]:
            status = st.status_json(r, counts, r.evidence, r.message)
            for listener in self.listeners:
                listener(before, r, status)
        return True


def slow_threshold_ms(spec: RolloutSpec) -> int | None:
    """``analysis.slowSeconds`` as the store's threshold: a run of a whole number of
    milliseconds is longer than ``x`` seconds exactly when it is longer than
    ``floor(1000 x)`` ms."""
    slow = spec.analysis.slow_seconds
    return None if slow is None else math.floor(slow * 1000)


def _where(r: Rollout) -> str:
    return f"step {r.step + 1}/{len(r.spec.step_weights)} ({r.canary_weight}%)"


def _busy(alias: str) -> Conflict:
    return Conflict(f"the rollout of flow alias {alias} is being changed concurrently; try again")


# The app's one Rollouts (set by router.app while the store is open); the API's
# handlers read it per request: ``request.app[ROLLOUTS]``.
ROLLOUTS = web.AppKey("rollouts", Rollouts)
