"""The reference executor: echoes its input, remembers what it ran. A demo aid.

It is what ``flow-router serve`` forwards to when no ``--upstream`` is given
(mounted under ``/_executor`` in the gateway's own app) and what
``flow-router executor`` serves alone. It implements the executor protocol in
``router/forward.py`` and is the model for a real one.

It authenticates nobody: anyone who reaches it can run "executions" and
rewrite the records a DescribeExecution reads. So when the API requires
signatures (``--credentials``) the gateway does not mount it on the API port
but serves it apart on an ephemeral port of 127.0.0.1 (:class:`Apart`), which
only this machine can reach. What it remembers is bounded: at most
:data:`MAX_RECORDS` executions and :data:`MAX_BYTES` bytes of them, the oldest
forgotten first; each request body is capped like the gateway's.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

log = logging.getLogger("flow_router.executor")

PREFIX = "/_executor"
TEMPLATE_PATH = PREFIX + "/flows/{flow}/versions/{version}/executions"
MAX_RECORDS = 10_000
MAX_BYTES = 64 * 1024**2
MAX_REQUEST_BYTES = 1024**2  # of the stand-alone executor (the gateway's: --max-body-bytes)

RunKey = tuple[str, str, str]  # flow, version, execution name


class RunLog:
    """The executions run, newest last, each kept as the JSON it was answered with.

    Bounded in count and in bytes: past either bound the oldest are forgotten,
    and a DescribeExecution of one is then a 404, as for a name never run. A
    record alone larger than ``max_bytes`` is answered but not kept.
    """

    def __init__(self, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> None:
        if max_records < 1 or max_bytes < 1:
            raise ValueError("a run log keeps at least one record and one byte")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.bytes = 0
        self._runs: OrderedDict[RunKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: RunKey) -> bytes | None:
        return self._runs.get(key)

    def put(self, key: RunKey, record: bytes) -> None:
        replaced = self._runs.pop(key, None)
        if replaced is not None:
            self.bytes -= len(replaced)
        if len(record) > self.max_bytes:
            return
        self._runs[key] = record
        self.bytes += len(record)
        while len(self._runs) > self.max_records or self.bytes > self.max_bytes:
            self.bytes -= len(self._runs.popitem(last=False)[1])


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
    record = orjson.dumps(
        {
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
    )
    request.app[RUNS].put((flow, version, name), record)
    return web.Response(body=record, content_type="application/json")


async def _describe(request: web.Request) -> web.Response:
    key = (request.match_info["flow"], request.match_info["version"], request.match_info["name"])
    record = request.app[RUNS].get(key)
    if record is None:
        return web.json_response({"message": "no such execution"}, status=404)
    return web.Response(body=record, content_type="application/json")


def add_routes(app: web.Application, prefix: str = PREFIX, runs: RunLog | None = None) -> None:
    """Serve the executor under ``prefix``; request bodies are capped by the app's
    ``client_max_size`` (a 413 beyond it)."""
    app[RUNS] = runs if runs is not None else RunLog()
    base = prefix + "/flows/{flow}/versions/{version}/executions"
    app.router.add_post(base, _start)
    app.router.add_get(base + "/{name}", _describe)


def upstream_for(host: str, port: int) -> str:
    """The ``--upstream`` template that reaches ``flow-router executor`` on host:port."""
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: this machine reaches it here
        host = "127.0.0.1"
    address = f"[{host}]" if ":" in host else host
    return f"http://{address}:{port}{TEMPLATE_PATH.removeprefix(PREFIX)}"


def make_executor_app(
    runs: RunLog | None = None, max_request_bytes: int = MAX_REQUEST_BYTES
) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes)
    add_routes(app, prefix="", runs=runs)
    return app


class Apart:
    """The reference executor on its own 127.0.0.1 port, for a gateway whose API is signed.

    The port is bound at once, so :attr:`template` (the upstream the gateway
    forwards to) is known before the app starts; :meth:`serve` is the app's
    ``cleanup_ctx`` that serves it while the gateway runs.
    """

    def __init__(self, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.max_request_bytes = max_request_bytes
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/flows/{{flow}}/versions/{{version}}/executions"

    async def serve(self, app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(make_executor_app(max_request_bytes=self.max_request_bytes))
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock).start()
            log.info(
                "the API is signed, the reference executor is not: it listens apart, "
                "on 127.0.0.1:%d only",
                self.port,
            )
            yield
        finally:
            await runner.cleanup()
            self._sock.close()
