"""The reference executor: echoes its input, remembers what it ran.

It is what ``flow-router serve`` forwards to when no ``--upstream`` is given
(mounted under ``/_executor`` in the gateway's own app) and what
``flow-router executor`` serves alone. It implements the executor protocol in
``router/forward.py`` and is the model for a real one.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

PREFIX = "/_executor"
TEMPLATE_PATH = PREFIX + "/flows/{flow}/versions/{version}/executions"
_MAX_REMEMBERED = 10_000

RunLog = OrderedDict[tuple[str, str, str], dict[str, Any]]
RUNS = web.AppKey("runs", RunLog)


async def _start(request: web.Request) -> web.Response:
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.json_response({"message": "body must be JSON"}, status=400)
    if not isinstance(payload, dict):
        return web.json_response({"message": "body must be a JSON object"}, status=400)
    flow = request.match_info["flow"]
    version = request.match_info["version"]
    name = str(payload.get("execution") or uuid.uuid4())
    now = time.time()
    record = {
        "status": "Succeeded",
        "input": payload.get("input"),
        "output": payload.get("input"),
        "flow": flow,
        "version": version,
        "alias": payload.get("alias", ""),
        "execution": name,
        "startedAt": now,
        "stoppedAt": now,
    }
    runs = request.app[RUNS]
    runs[(flow, version, name)] = record
    if len(runs) > _MAX_REMEMBERED:
        runs.popitem(last=False)
    return web.Response(body=orjson.dumps(record), content_type="application/json")


async def _describe(request: web.Request) -> web.Response:
    key = (request.match_info["flow"], request.match_info["version"], request.match_info["name"])
    record = request.app[RUNS].get(key)
    if record is None:
        return web.json_response({"message": "no such execution"}, status=404)
    return web.Response(body=orjson.dumps(record), content_type="application/json")


def add_routes(app: web.Application, prefix: str = PREFIX) -> None:
    app[RUNS] = OrderedDict()
    base = prefix + "/flows/{flow}/versions/{version}/executions"
    app.router.add_post(base, _start)
    app.router.add_get(base + "/{name}", _describe)


def upstream_for(host: str, port: int) -> str:
    """The ``--upstream`` template that reaches ``flow-router executor`` on host:port."""
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: this machine reaches it here
        host = "127.0.0.1"
    address = f"[{host}]" if ":" in host else host
    return f"http://{address}:{port}{TEMPLATE_PATH.removeprefix(PREFIX)}"


def make_executor_app() -> web.Application:
    app = web.Application()
    add_routes(app, prefix="")
    return app
