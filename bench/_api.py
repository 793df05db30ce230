"""The CloudFlow calls the gateway bench makes (docs/wire.md §2.1): form-encoded POSTs."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

DEFINITION = "version: v1\ntype: flow\nsteps:\n  - type: pass\n    name: bench\n"
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def action_path(action: str) -> str:
    return f"/?Action={action}&Format=json&Version=2019-03-15"


def routing(weights: dict[str, int]) -> str:
    entries = [{"Version": v, "Weight": w} for v, w in weights.items()]
    return json.dumps(entries, separators=(",", ":"))


def post(port: int, action: str, timeout: float = 10.0, **params: str) -> dict[str, Any]:
    """One CloudFlow action with plain urllib; raises with the answer's body on an error."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{action_path(action)}",
        data=urlencode(params).encode(),
        headers=_FORM,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{action} -> HTTP {e.code}: {e.read()[:300]!r}") from None
    parsed: dict[str, Any] = json.loads(body or b"{}")
    return parsed


def setup_flow(port: int, flow: str, alias: str, weights: dict[str, int]) -> None:
    """CreateFlow, one PublishFlowVersion per version, CreateFlowAlias with these weights."""
    post(port, "CreateFlow", Name=flow, Definition=DEFINITION, Type="FDL", Description="bench")
    for _ in weights:
        post(port, "PublishFlowVersion", FlowName=flow, Description="bench")
    post(port, "CreateFlowAlias", FlowName=flow, Name=alias, RoutingConfigurations=routing(weights))


class KeepAlive:
    """A keep-alive connection for tight loops (polling), reconnecting when the server closes."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: str) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                self._conn.request("POST", path, body, _FORM)
                answer = self._conn.getresponse()
                data = answer.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                continue
            headers = {k.lower(): v for k, v in answer.getheaders()}
            if headers.get("connection", "").lower() == "close":
                self.close()
            return answer.status, headers, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
