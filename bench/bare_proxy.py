"""A bare aiohttp passthrough proxy: the floor for any Python gateway.

No routing, no parsing, no store: read the request body, POST it to one fixed
executor URL over one shared ClientSession (keep-alive pool), answer with the
executor's status and body. Whatever flow-router costs above this is its own.

Run alone: ``python -m bench.bare_proxy --port 8081 --upstream
http://127.0.0.1:9090/flows/f1/versions/1/executions [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession()
    yield
    await app[SESSION].close()


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    async with request.app[SESSION].post(
        request.app[UPSTREAM], data=body, headers=_HEADERS
    ) as upstream:
        answer = await upstream.read()
        return web.Response(body=answer, status=upstream.status, content_type="application/json")


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--upstream", required=True, help="the executor URL every POST goes to")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    args = parser.parse_args(argv)
    loop: asyncio.AbstractEventLoop | None = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
