"""The console's JSON under ``/v1/console`` (docs/console.md is the reference).

======  =============================  ==================  =====================
method  path                           operation           answer
======  =============================  ==================  =====================
GET     ``/v1/console/flows``          ListConsoleFlows    flows with their aliases
                                                           (``?search=&limit=&nextToken=``)
GET     ``/v1/console/flows/{flow}``   GetConsoleFlow      one flow's aliases: weights,
                                                           realised split, outcomes,
                                                           rollouts
======  =============================  ==================  =====================

Part of flow-router's own ``/v1`` API, so it answers like the rollout API
(router/rollout/api): through the dialects' request envelope, errors as
``{"code", "message"}`` with the same table, and with ``--credentials`` only to
requests signed with SigV4 for the service ``flow-router`` (the console page
signs in the browser). The numbers come from the store, so every replica
answers the same.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import unquote

import orjson
from aiohttp import web

from router import errors
from router.auth import Verifier
from router.auth.sigv4 import FLOW_ROUTER_SERVICE
from router.console import data
from router.dialects import envelope
from router.metrics import Metrics
from router.model import now_ms
from router.rollout import api_errors
from router.rollout import state as rollout_state
from router.rollout.api import DIALECT, REQUEST_ID_HEADER
from router.rollout.controller import ROLLOUTS
from router.service import Gateway
from router.store.base import Store
from router.store.stats import BUCKET_MS

log = logging.getLogger("flow_router.console")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
LIST_PAGE = 1000  # flows read per store call while searching
MAX_SCAN = 100_000  # flows a search reads at most


@dataclass(frozen=True, slots=True)
class Routed:
    name: str
    flow: str | None = None


def route(method: str, raw_path: str) -> Routed:
    path = raw_path.split("?", 1)[0]
    parts = path.split("/")[1:]
    if parts[:3] == ["v1", "console", "flows"] and len(parts) in (3, 4):
        if len(parts) == 4 and not parts[3]:
            raise errors.UnknownAction(f"no operation at {path}")
        found = Routed("ListConsoleFlows") if len(parts) == 3 else None
        if found is None:
            found = Routed("GetConsoleFlow", unquote(parts[3]))
        if method != "GET":
            raise api_errors.WrongMethod(method, path, ("GET",))
        return found
    raise errors.UnknownAction(f"no operation at {path}")


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise errors.InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return int(raw)


def _offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise errors.InvalidToken()
    return int(raw)


async def list_flows(store: Store, search: str, limit: int, offset: int) -> data.Json:
    """The flows whose name contains ``search`` (any case), ``limit`` from ``offset``,
    with the phase of each active rollout among them."""
    needle = search.casefold()
    matched: list[tuple[str, str]] = []
    token = None
    total = 0
    while total < MAX_SCAN:  # names only: the flows themselves are read for one page
        page = await store.list_flow_names(LIST_PAGE, token)
        total += len(page.items)
        matched += [f for f in page.items if needle in f[0].casefold()]
        token = page.next_token
        if token is None:
            break
    shown = matched[offset : offset + limit]
    snapshots = await asyncio.gather(
        *(store.snapshot(flow_id, by_id=True) for _, flow_id in shown), return_exceptions=True
    )
    shown_ids = {flow_id for _, flow_id in shown}
    active = [(f, a) for f, a in await store.active_rollouts() if f in shown_ids]
    rolling: dict[str, dict[str, str]] = {}
    for (flow_id, alias), phase in zip(active, await _phases(store, active), strict=True):
        if phase is not None:
            rolling.setdefault(flow_id, {})[alias] = phase
    flows = []
    for snapshot in snapshots:
        if isinstance(snapshot, errors.FlowNotFound):
            continue  # deleted meanwhile
        if isinstance(snapshot, BaseException):
            raise snapshot
        flow = snapshot.flow
        flows.append(data.flow_summary(flow, snapshot.aliases, rolling.get(flow.id, {})))
    following = offset + limit
    return {
        "flows": flows,
        "total": total,
        "matched": len(matched),
        "nextToken": str(following) if following < len(matched) else None,
    }


async def _phases(store: Store, active: list[tuple[str, str]]) -> list[str | None]:
    """The phase of each (flow id, alias) rollout; ``None`` where it is gone meanwhile."""

    async def phase(flow_id: str, alias: str) -> str | None:
        try:
            _, stored = await store.get_rollout(flow_id, alias)
        except (errors.FlowNotFound, errors.AliasNotFound):
            return None
        return None if stored is None else rollout_state.decode(stored.doc).phase.value

    return list(await asyncio.gather(*(phase(f, a) for f, a in active)))


async def get_flow(request: web.Request, store: Store, name: str) -> data.Json:
    snapshot = await store.snapshot(name, by_id=False)
    flow = snapshot.flow
    now = now_ms()
    shown = data.window(now)
    stats = await store.execution_stats(flow.id, shown.start * BUCKET_MS, now)
    rollouts: dict[str, data.Json] = {}
    controller = request.app.get(ROLLOUTS)
    if controller is not None:
        names = [a.name for a in snapshot.aliases]
        found = await asyncio.gather(
            *(controller.observe(flow.id, n) for n in names), return_exceptions=True
        )
        for alias, observed in zip(names, found, strict=True):
            if isinstance(observed, errors.RolloutNotFound | errors.AliasNotFound):
                continue
            if isinstance(observed, BaseException):
                raise observed
            # the status of the rollout API, and the steps to draw its progress
            steps = list(observed.rollout.spec.step_weights)
            rollouts[alias] = {**observed.status(), "stepWeights": steps}
    return data.flow_detail(flow, snapshot.aliases, stats, now, rollouts)


class Console:
    """This API as the request envelope sees it (router/dialects/envelope.Dialect)."""

    name = DIALECT
    request_id_header = REQUEST_ID_HEADER
    log = log

    def __init__(self, gateway_key: web.AppKey[Gateway]) -> None:
        self._gateway = gateway_key

    def route(self, request: web.Request) -> Routed:
        return route(request.method, request.raw_path)

    async def dispatch(
        self, request: web.Request, routed: Routed, rid: str, verifier: Verifier | None
    ) -> web.StreamResponse:
        if verifier is not None:
            await verifier.aws(request, FLOW_ROUTER_SERVICE)  # before anything is read
        store = request.app[self._gateway].store
        query = request.query
        if routed.flow is None:
            limit, offset = _limit(query.get("limit")), _offset(query.get("nextToken"))
            body = await list_flows(store, query.get("search", ""), limit, offset)
        else:
            body = await get_flow(request, store, routed.flow)
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def lookup(self, error: errors.RouterError, routed: Routed | None) -> tuple[int, str]:
        return api_errors.lookup(error)

    def error_response(
        self, error: errors.RouterError, status: int, code: str, rid: str
    ) -> web.Response:
        return api_errors.render(error, status, code)


def add_routes(app: web.Application, gateway_key: web.AppKey[Gateway], metrics: Metrics) -> None:
    """Serve ``/v1/console/…``: before the rest of ``/v1`` (the first match wins)."""
    handle = envelope.handler(Console(gateway_key), metrics)
    app.router.add_route("*", r"/v1/console/{tail:[\s\S]*}", handle)
    app.router.add_route("*", "/v1/console", handle)
