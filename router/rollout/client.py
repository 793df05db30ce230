"""A small synchronous client of the ``/v1`` rollout API, for ``flow-router rollout``.

Plain ``http.client`` (no proxies from the environment, no redirects followed:
a signed request goes exactly where it was signed for). With keys it signs every
request with AWS SigV4 for the service ``flow-router`` through
:func:`router.auth.sigv4.sign`, the same canonical request the gateway verifies.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from router.auth import sigv4

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_REGION = "us-east-1"  # any region is accepted; only the service name is checked


class ClientError(Exception):
    """The request could not be made or answered (no HTTP status to show)."""


class ApiError(Exception):
    """The API answered with an error: its status, ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Keys:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"Keys({self.access_key_id!r}, <secret>)"


def label(name: str) -> str:
    """One path label: every byte but ``A-Z a-z 0-9 - _ . ~`` percent-encoded (a ``/``
    too), the bytes of a command-line argument as the OS gave them."""
    return quote(name.encode("utf-8", "surrogateescape"), safe="-_.~")


class Client:
    """Calls ``…/v1/flows/{flow}/aliases/{alias}/rollout[/{action}]`` on ``endpoint``."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        keys: Keys | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        region: str = DEFAULT_REGION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--endpoint {endpoint!r} must be an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError(f"--endpoint {endpoint!r} must not have a query or fragment")
        self.endpoint = endpoint
        self._https = parts.scheme == "https"
        self._host = parts.netloc.rpartition("@")[2]  # what goes in Host, and is signed
        self._base = parts.path.rstrip("/")  # a gateway behind a path prefix
        self.keys = keys
        self.timeout_s = timeout_s
        self.region = region
        self._clock = clock

    def path(self, flow: str, alias: str, action: str = "") -> str:
        path = f"{self._base}/v1/flows/{label(flow)}/aliases/{label(alias)}/rollout"
        return f"{path}/{action}" if action else path

    def call(
        self,
        method: str,
        flow: str,
        alias: str,
        action: str = "",
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The status JSON the API answers; :class:`ApiError` for an error answer,
        :class:`ClientError` when there is no answer."""
        path = self.path(flow, alias, action)
        data = orjson.dumps(body) if body is not None else b""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.keys is not None:
            headers |= sigv4.sign(
                method,
                self._host,
                path,
                data,
                self.keys.access_key_id,
                self.keys.secret_access_key,
                self._clock(),
                region=self.region,
            )
        else:
            headers["Host"] = self._host
        status, answer = self._send(method, path, data, headers)
        return _decode(status, answer)

    def _send(
        self, method: str, path: str, data: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, timeout=self.timeout_s)
        try:
            connection.request(method, path, body=data or None, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as e:
            raise ClientError(f"cannot reach {self.endpoint}: {e}") from None
        finally:
            connection.close()


def _decode(status: int, answer: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise ClientError(f"the answer ({status}) is not a JSON object: {answer[:200]!r}")
        return body
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        raise ApiError(status, body["code"], str(body.get("message", "")))
    # not this API's envelope: a proxy in front, or not a flow-router at all
    text = answer[:200].decode("utf-8", "replace").strip()
    raise ApiError(status, "HTTP", text or http.client.responses.get(status, "error"))
