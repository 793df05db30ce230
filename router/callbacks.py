"""``POST /_callback/{flowId}/{execution}/{token}``: executors push a final status.

Not signed like the APIs: the per-execution HMAC token in the path is the
authentication (router/lifecycle/callback.py). In order, and each check before
anything else is read or written:

* a token that does not verify: **403**, without touching the store;
* a body that is not a final reply (``final_body``): **400**, nothing changes;
* otherwise the record's transition (``Executions.finish``): **200**
  ``{"status": <the record's final status>}``, whether this call made the
  transition or an earlier one did (a repeat is harmless, counted once);
* an execution the store does not know: **404**. The record of an unnamed
  execution reaches the store with the journal's next flush, so a callback that
  arrives first is retried here a few times (about 0.6 s) before that answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from router.errors import ExecutionNotFound, InvalidArgument, NotFound, Unavailable
from router.lifecycle.callback import ROUTE, final_body
from router.limits import read_body
from router.service import Gateway

NOT_FOUND_RETRIES = 5  # waits of 20, 40, 80, 160, 320 ms
FIRST_RETRY_S = 0.02


def _json(body: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def add_routes(app: web.Application, gateway_key: web.AppKey[Gateway]) -> None:
    async def callback(request: web.Request) -> web.Response:
        executions = request.app[gateway_key].executions
        callbacks = executions.callbacks
        if callbacks is None:
            return _json({"message": "callbacks are not enabled (--callback-url)"}, 404)
        info = request.match_info
        flow_id, name = info["flow_id"], info["execution"]
        if not callbacks.tokens.verify(flow_id, name, info["token"]):
            return _json({"message": "the callback token is not valid for this execution"}, 403)
        try:  # within --body-timeout and --max-body-bytes, like an API request
            final = final_body(await read_body(request))
        except InvalidArgument as e:  # BodyTooLarge and BodyTimeout included
            return _json({"message": e.message}, 400)
        delay = FIRST_RETRY_S
        for attempt in range(NOT_FOUND_RETRIES + 1):
            try:
                # the store keeps a final time no earlier than the start
                at = executions.clock()
                if final.stopped_at is not None:
                    at = min(final.stopped_at, at)
                await executions.finish(
                    flow_id, name, final.status, final.output, final.error, final.cause, at
                )
                record = await executions.store.get_execution(flow_id, name)
            except ExecutionNotFound:
                if attempt == NOT_FOUND_RETRIES:
                    break
                await asyncio.sleep(delay)
                delay *= 2
                continue
            except NotFound as e:  # the flow is gone
                return _json({"message": e.message}, 404)
            except Unavailable:
                return _json({"message": "the store is unavailable; retry"}, 503)
            return _json({"status": record.status.value}, 200)
        return _json({"message": f"execution {name} is not known"}, 404)

    app.router.add_post(ROUTE, callback)
