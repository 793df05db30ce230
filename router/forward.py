"""The executor client: one pooled session per process, bounded by timeouts.

Executor protocol (documented in the README): the gateway POSTs a JSON object
``{"flow", "flowId", "version", "alias", "execution", "input"}`` to the URL made
from the upstream template, and the executor answers 2xx with a JSON object
(``status`` and ``output`` are read if present, the rest is kept). An
execution is described with ``GET <that URL>/<execution name>``.

Every failure becomes an :class:`~router.errors.ExecutorError` subclass that
names the version, so a dialect can answer with a typed error and the caller
can see which version failed. The gateway never retries an execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from router.errors import ExecutionNotFound, ExecutorError, ExecutorTimeout, ExecutorUnreachable

_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 2.0
    total_s: float = 30.0


class UpstreamTemplate:
    """``http://host/flows/{flow}/versions/{version}`` with URL-quoted values."""

    FIELDS = ("flow", "flowId", "version", "alias")

    def __init__(self, template: str) -> None:
        self.template = template
        try:
            template.format(**dict.fromkeys(self.FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"upstream template {template!r} is invalid: use only "
                f"{', '.join('{' + f + '}' for f in self.FIELDS)}"
            ) from e
        if not template.startswith(("http://", "https://")):
            raise ValueError(f"upstream template {template!r} must be an http(s) URL")

    def url(self, flow: str, flow_id: str, version: str, alias: str) -> str:
        return self.template.format(
            flow=quote(flow, safe=""),
            flowId=quote(flow_id, safe=""),
            version=quote(version, safe=""),
            alias=quote(alias, safe=""),
        )


@dataclass(frozen=True, slots=True)
class ExecutorReply:
    status: str
    output: Any
    body: Mapping[str, Any]


def _reply(raw: bytes, version: str) -> ExecutorReply:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ExecutorError("executor answered with a body that is not JSON", version) from None
    if not isinstance(body, dict):
        raise ExecutorError("executor answered with JSON that is not an object", version)
    status = body.get("status", "Succeeded")
    return ExecutorReply(str(status), body.get("output"), body)


class Forwarder:
    """Owns the pooled client session; created and closed by the app."""

    def __init__(self, timeouts: Timeouts, max_connections: int = 0) -> None:
        self.timeouts = timeouts
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.total_s, sock_connect=self.timeouts.connect_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, json_serialize=lambda o: orjson.dumps(o).decode()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Forwarder.start() was not awaited")
        return self._session

    async def execute(self, url: str, payload: Mapping[str, Any], version: str) -> ExecutorReply:
        body = orjson.dumps(payload)
        raw, status = await self._call("POST", url, version, body)
        if status >= 300:
            raise ExecutorError(f"executor answered HTTP {status}", version)
        return _reply(raw, version)

    async def describe(self, url: str, execution: str, version: str) -> ExecutorReply:
        raw, status = await self._call("GET", f"{url}/{quote(execution, safe='')}", version)
        if status == 404:
            raise ExecutionNotFound(execution, f"executor of version {version} has no {execution}")
        if status >= 300:
            raise ExecutorError(f"executor answered HTTP {status}", version)
        return _reply(raw, version)

    async def _call(
        self, method: str, url: str, version: str, body: bytes | None = None
    ) -> tuple[bytes, int]:
        try:
            async with self.session.request(
                method, url, data=body, headers=_JSON_HEADERS if body is not None else None
            ) as resp:
                return await resp.read(), resp.status
        except TimeoutError:
            raise ExecutorTimeout(
                f"executor of version {version} did not answer within {self.timeouts.total_s:g}s",
                version,
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.InvalidURL, OSError) as e:
            raise ExecutorUnreachable(
                f"executor of version {version} is unreachable: {type(e).__name__}", version
            ) from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as e:
            raise ExecutorError(
                f"executor of version {version} failed: {type(e).__name__}", version
            ) from None
