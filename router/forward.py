"""The executor client: one pooled session per process, bounded by timeouts.

Executor protocol v2 (docs/executor-protocol.md; v1 executors keep working):

* **Start**: the gateway POSTs ``{"flow", "flowId", "version", "alias",
  "execution", "input"}`` (plus ``"callback"`` when callbacks are on) to the
  URL made from the upstream template. The executor answers 2xx with a JSON
  object ``{"status", "output"?, "error"?, "cause"?}``; the rest is kept.
  ``status`` is ``Running``, ``Succeeded``, ``Failed``, ``TimedOut`` or
  ``Aborted``, in any case (:mod:`router.lifecycle.status`); an absent one
  means ``Succeeded``, which is what a v1 executor that finishes inside the
  start call says; any other is an ExecutorError naming the version.
* **Describe**: ``GET <that URL>/<execution>`` answers the same body; 404
  means the executor does not know the execution.
* **Stop**: ``POST <that URL>/<execution>/stop`` with ``{"error"?, "cause"?}``
  answers the same body (normally ``Aborted``); 404 means unknown, 409 means
  the execution had already finished (:class:`ExecutionFinished`).

Every failure becomes an :class:`~router.errors.ExecutorError` subclass that
names the version, so a dialect can answer with a typed error and the caller
can see which version failed, within ``--timeout`` of the execution's arrival
(waiting for a slot included). The gateway never retries an execution: one
that fails is reported, never sent again. Each (flow, version) has its own
in-flight limit and circuit breaker (:mod:`router.breaker`) on the start
call; describe and stop bypass them (they start nothing). The HTTP client
itself is :mod:`router.http1`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from router import errors
from router.breaker import VersionGuards, VersionLimits
from router.errors import (
    ExecutionNotFound,
    ExecutorError,
    ExecutorTimeout,
    ExecutorUnreachable,
)
from router.http1 import Client, ConnectError, UpstreamError
from router.lifecycle.record import as_text
from router.lifecycle.status import InvalidStatus, Status, parse
from router.metrics import Metrics


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
    status: Status  # a str enum: "Succeeded" wherever v1 had the string
    output: Any
    body: Mapping[str, Any]
    error: str | None = None
    cause: str | None = None


class ExecutionFinished(errors.ExecutionFinished):
    """Stop of an execution that had already finished (the executor answered 409).

    ``reply`` is the executor's body when it is a valid reply (it normally
    carries the final status), else ``None``.
    """

    def __init__(self, execution: str, reply: ExecutorReply | None) -> None:
        status = f" ({reply.status.value})" if reply is not None else ""
        super().__init__(execution, f"execution {execution} has already finished{status}")
        self.reply = reply


def _reply(raw: bytes, version: str) -> ExecutorReply:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ExecutorError(
            f"executor of version {version} answered with a body that is not JSON", version
        ) from None
    if not isinstance(body, dict):
        raise ExecutorError(
            f"executor of version {version} answered with JSON that is not an object", version
        )
    try:
        status = parse(body.get("status"))
    except InvalidStatus as e:
        raise ExecutorError(f"executor of version {version} answered an {e}", version) from None
    return ExecutorReply(
        status, body.get("output"), body, as_text(body.get("error")), as_text(body.get("cause"))
    )


class Forwarder:
    """Owns the pooled executor client; created and closed by the app."""

    def __init__(
        self,
        timeouts: Timeouts,
        max_idle_per_host: int = 256,
        limits: VersionLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.timeouts = timeouts
        self._max_idle = max_idle_per_host
        self._client: Client | None = None
        self.guards = VersionGuards(limits or VersionLimits(), metrics)

    async def start(self) -> None:
        self._client = Client(
            connect_timeout=self.timeouts.connect_s,
            total_timeout=self.timeouts.total_s,
            max_idle_per_host=self._max_idle,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("Forwarder.start() was not awaited")
        return self._client

    async def execute(self, url: str, payload: Mapping[str, Any], version: str) -> ExecutorReply:
        """Send one execution (``payload`` as the executor protocol describes it) once."""
        body = orjson.dumps(payload)
        now = asyncio.get_running_loop().time()
        deadline = now + self.timeouts.total_s
        guards = self.guards
        guard = guards.guard(str(payload.get("flowId", "")), str(payload.get("flow", "")), version)
        probe = guards.try_enter(guard, now)
        if probe is None:
            probe = await guards.wait(guard, deadline)
        healthy: bool | None = None  # stays None if cancelled: says nothing about the executor
        try:
            try:
                status, raw = await self._call("POST", url, version, body, deadline)
            except ExecutorError:
                healthy = False
                raise
            if status >= 300:
                healthy = 400 <= status < 500  # up, but refused this one
                raise ExecutorError(
                    f"executor of version {version} answered HTTP {status}", version
                )
            healthy = False
            reply = _reply(raw, version)
            healthy = True
            return reply
        finally:
            guards.leave(guard, probe, healthy)

    async def describe(self, url: str, execution: str, version: str) -> ExecutorReply:
        status, raw = await self._call("GET", f"{url}/{quote(execution, safe='')}", version)
        if status == 404:
            raise ExecutionNotFound(execution, f"executor of version {version} has no {execution}")
        if status >= 300:
            raise ExecutorError(f"executor of version {version} answered HTTP {status}", version)
        return _reply(raw, version)

    async def stop(
        self,
        url: str,
        execution: str,
        version: str,
        error: str | None = None,
        cause: str | None = None,
    ) -> ExecutorReply:
        """Ask the executor to stop ``execution``; its answer is normally ``Aborted``.

        Raises ExecutionNotFound (404) or ExecutionFinished (409, a Conflict).
        """
        payload = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
        target = f"{url}/{quote(execution, safe='')}/stop"
        status, raw = await self._call("POST", target, version, orjson.dumps(payload))
        if status == 404:
            raise ExecutionNotFound(execution, f"executor of version {version} has no {execution}")
        if status == 409:
            try:
                reply: ExecutorReply | None = _reply(raw, version)
            except ExecutorError:
                reply = None
            raise ExecutionFinished(execution, reply)
        if status >= 300:
            raise ExecutorError(f"executor of version {version} answered HTTP {status}", version)
        return _reply(raw, version)

    async def _call(
        self, method: str, url: str, version: str, body: bytes = b"", deadline: float | None = None
    ) -> tuple[int, bytes]:
        try:
            return await self.client.request(method, url, body, deadline=deadline)
        except TimeoutError:
            raise ExecutorTimeout(
                f"executor of version {version} did not answer within {self.timeouts.total_s:g}s",
                version,
            ) from None
        except ConnectError as e:
            raise ExecutorUnreachable(
                f"executor of version {version} is unreachable: {e}", version
            ) from None
        except UpstreamError as e:
            raise ExecutorError(f"executor of version {version} failed: {e}", version) from None
        except ValueError as e:  # a template that does not make an http(s) URL
            raise ExecutorUnreachable(
                f"executor URL for version {version} is invalid: {e}", version
            ) from None
