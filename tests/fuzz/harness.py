"""What every fuzz test shares: a raw HTTP client, the per-answer invariants, the store walk.

The client writes the request bytes itself (``RawClient``), so a test can send
what no SDK would: duplicate parameters, non-UTF-8 bodies, raw non-ASCII bytes
in the target, over-long lines. Answers are read with the standard library's
response parser (chunked event streams included).

Invariants checked on every answer (``check_cloudflow``/``check_bedrock``):
never a 5xx, never a traceback, an answer within ``MAX_SECONDS``, and every
error in its dialect's envelope with a status/code pair from the dialect's
error table. ``walk_store`` walks a store through the ``Store`` protocol after
a run and checks that nothing was half-written; ``check_redis_keys`` does the
same on the raw Redis keys (orphaned keys of a deleted flow, indexes that
disagree with their hashes).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from botocore.eventstream import EventStreamBuffer
from hypothesis import HealthCheck, reject, settings

from router.dialects import cloudflow
from router.dialects.bedrock import exceptions as bedrock_exceptions
from router.errors import NotFound
from router.model import MAX_WEIGHT
from router.store.base import Store
from tests.fuzz.strategies import (
    BR_ALIAS,
    BR_FLOW,
    CF_ALIASES,
    CF_EMPTY_FLOW,
    CF_FLOW,
    CF_GET_ACTIONS,
    DEFINITION,
    FORM,
    KNOWN_BUGS,
    MISSING_ID,
    ROLE,
    BrRequest,
    CfRequest,
    encode_bedrock,
    newline_in_path,
)
from tests.harness import BackgroundLoop, GatewayServer

T = TypeVar("T")

MAX_SECONDS = 5.0  # "an answer within a few seconds"; the idempotency wait is 3 s at most
BODY_LIMIT = 1024**2  # make_app's client_max_size
_TRACEBACK = (b"Traceback", b'File "', b"Server got itself in trouble")

CLOUDFLOW_ERRORS = frozenset(cloudflow.ERRORS.values())
BEDROCK_ERRORS = frozenset(bedrock_exceptions.ERRORS.values()) | {
    (status, code) for code, status in bedrock_exceptions.RUNTIME_STATUS.items()
}

Header = tuple[str | bytes, str | bytes]


# -- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    method: str
    target: bytes
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed: float
    # Not valid HTTP/1.1 as aiohttp's parser takes it (an over-long line, a control
    # character in a header): it answers 400 itself before any dialect is chosen.
    malformed: bool = False

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __str__(self) -> str:
        body = self.body[:600]
        return f"{self.method} {self.target[:300]!r} -> {self.status} {body!r}"


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


MAX_LINE = 8190  # aiohttp's max_line_size and max_field_size
_BAD_HEADER_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def malformed_http(target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    if len(target) + 20 > MAX_LINE or re.search(rb"[\x00-\x20\x7f-\xff]", target):
        return True
    return any(len(k) + len(v) + 2 > MAX_LINE or _BAD_HEADER_VALUE.search(v) for k, v in headers)


class RawClient:
    """One keep-alive HTTP/1.1 connection to the gateway, reopened when it closes."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self.sent = 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        return self._sock

    def send(
        self,
        method: str,
        target: str | bytes,
        body: bytes = b"",
        headers: Sequence[Header] = (),
    ) -> Answer:
        raw_target = _bytes(target)
        fields = [(_bytes(k), _bytes(v)) for k, v in headers]
        head = [
            b"%s %s HTTP/1.1" % (method.encode(), raw_target),
            b"Host: 127.0.0.1:%d" % self.port,
        ]
        if b"content-length" not in {k.lower() for k, _ in fields} and (
            body or method in ("POST", "PUT")
        ):
            head.append(b"Content-Length: %d" % len(body))
        head.extend(k + b": " + v for k, v in fields)
        request = b"\r\n".join(head) + b"\r\n\r\n" + body
        malformed = malformed_http(raw_target, fields)
        self.sent += 1
        t0 = time.monotonic()
        sock = self._connect()
        try:
            # The server may answer (400, 413) and close before reading a large body.
            with contextlib.suppress(OSError):
                sock.sendall(request)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if malformed:  # aiohttp may reset a connection whose request it cannot parse
                return Answer(method, raw_target, 0, http.client.HTTPMessage(), b"", 0.0, malformed)
            raise AssertionError(
                f"{method} {raw_target[:300]!r}: no complete answer ({e!r}): "
                "the gateway dropped or hung the connection"
            ) from e
        elapsed = time.monotonic() - t0
        if response.will_close:
            self.close()
        return Answer(
            method, raw_target, response.status, response.headers, data, elapsed, malformed
        )


# -- invariants -----------------------------------------------------------------------------


def check_common(answer: Answer) -> bool:
    """The checks for every answer; true when aiohttp itself refused a malformed request."""
    assert answer.status < 500, f"5xx: {answer}"
    for marker in _TRACEBACK:
        assert marker not in answer.body, f"internals in the body: {answer}"
    assert answer.elapsed < MAX_SECONDS, f"took {answer.elapsed:.1f}s: {answer}"
    # status 0: the connection was reset instead (see RawClient.send)
    return answer.malformed and answer.status in (0, 400, 413, 431)


def _json_object(answer: Answer) -> dict[str, Any]:
    ctype = answer.header("Content-Type") or ""
    assert ctype.startswith("application/json"), f"Content-Type {ctype!r}: {answer}"
    try:
        body = answer.json()
    except ValueError:
        raise AssertionError(f"body is not JSON: {answer}") from None
    assert isinstance(body, dict), f"body is not a JSON object: {answer}"
    return body


def _text(body: Mapping[str, Any], key: str, answer: Answer) -> str:
    value = body.get(key)
    assert isinstance(value, str) and value, f"{key} missing or empty: {answer}"
    return value


def check_cloudflow(answer: Answer) -> dict[str, Any]:
    """The CloudFlow invariants (docs/wire.md §2.4/§2.5); returns the JSON body."""
    if check_common(answer):
        return {}
    body = _json_object(answer)
    rid = _text(body, "RequestId", answer)
    assert answer.header("x-acs-request-id") == rid, f"x-acs-request-id != RequestId: {answer}"
    if answer.status >= 400:
        code = _text(body, "Code", answer)
        _text(body, "Message", answer)
        assert (answer.status, code) in CLOUDFLOW_ERRORS, f"unknown status/Code pair: {answer}"
    else:
        assert answer.status == 200, f"CloudFlow answers 200 on success: {answer}"
        assert "Code" not in body, answer
    return body


def check_bedrock(answer: Answer) -> dict[str, Any] | list[tuple[dict[str, str], bytes]]:
    """The Bedrock invariants (docs/wire.md §3.3/§3.4/§4); returns the JSON body or the stream."""
    if check_common(answer):
        return {}
    assert answer.header("x-amzn-RequestId"), f"no x-amzn-RequestId: {answer}"
    if answer.status >= 400:
        code = answer.header("x-amzn-ErrorType")
        assert code, f"no x-amzn-ErrorType: {answer}"
        body = _json_object(answer)
        _text(body, "message", answer)
        assert (answer.status, code) in BEDROCK_ERRORS, f"unknown status/code pair: {answer}"
        return body
    assert answer.status in (200, 201, 202), f"unexpected success status: {answer}"
    assert not answer.header("x-amzn-ErrorType"), answer
    if (answer.header("Content-Type") or "").startswith("application/vnd.amazon.eventstream"):
        return check_event_stream(answer)
    return _json_object(answer)


def check_event_stream(answer: Answer) -> list[tuple[dict[str, str], bytes]]:
    """Every message decodes (CRCs included); none is an internal error, the in-stream 5xx."""
    buffer = EventStreamBuffer()
    buffer.add_data(answer.body)
    messages = [(dict(m.headers), m.payload) for m in buffer]
    assert messages, f"empty event stream: {answer}"
    for headers, payload in messages:
        assert headers.get(":message-type") in ("event", "exception"), (headers, answer)
        assert headers.get(":exception-type") != "internalServerException", (
            f"internal error inside the event stream: {payload!r} ({answer})"
        )
        for marker in _TRACEBACK:
            assert marker not in payload, answer
    return messages


# -- the gateway under test, and what is seeded in it --------------------------------------


def fuzz_settings(examples: int, **overrides: Any) -> settings:
    """Bounded, reproducible runs for CI; ``FLOW_ROUTER_FUZZ_SCALE=10`` and
    ``FLOW_ROUTER_FUZZ_RANDOM=1`` for a longer, differently seeded local run."""
    scale = float(os.environ.get("FLOW_ROUTER_FUZZ_SCALE", "1"))
    options: dict[str, Any] = {
        "max_examples": max(1, round(examples * scale)),
        "deadline": None,
        "database": None,  # nothing written into the repository
        "derandomize": not os.environ.get("FLOW_ROUTER_FUZZ_RANDOM"),
        "suppress_health_check": list(HealthCheck),
        "print_blob": True,
    }
    options.update(overrides)
    return settings(**options)


@dataclass
class Target:
    """A running gateway, its store, and a raw client to it."""

    loop: BackgroundLoop
    server: GatewayServer
    store: Store
    client: RawClient
    redis_url: str | None = None
    seed: Seed | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def cloudflow(self, action: str, **params: str) -> Answer:
        """A well-formed CloudFlow request, as the fnf SDK sends it."""
        target = "/?" + urlencode({"Action": action, "Format": "json", "Version": "2019-03-15"})
        if action in CF_GET_ACTIONS:
            return self.client.send("GET", target + "&" + urlencode(params, quote_via=quote))
        body = urlencode(params).encode()
        return self.client.send("POST", target, body, [("Content-Type", FORM)])

    def bedrock(self, method: str, path: str, body: Any = None) -> Answer:
        data = b"" if body is None else json.dumps(body).encode()
        headers: list[Header] = [("Content-Type", "application/json")] if body is not None else []
        return self.client.send(method, path, data, headers)

    def walk(self, *, allow_dangling: bool) -> StoreReport:
        report = self.run(walk_store(self.store, allow_dangling=allow_dangling))
        if self.redis_url is not None:
            report.keys = check_redis_keys(self.redis_url, getattr(self.store, "prefix", ""))
        return report


def _ok(answer: Answer, status: int = 200) -> dict[str, Any]:
    assert answer.status == status, f"seeding failed: {answer}"
    body: dict[str, Any] = answer.json()
    return body


class Seed:
    """The resources the fuzzers aim at, recreated whenever a fuzzed request broke them.

    ``f1`` (CloudFlow): versions 1 and 2, aliases ``prod`` 1:30/2:70 and ``canary`` 2:1.
    ``f2`` (CloudFlow): no versions. ``b1`` (Bedrock): versions 1 and 2, alias ``live``
    -> 1, and an execution ``e1`` started through it.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self._ids: dict[tuple[str, str | None], str] = {}
        self.rebuilds = 0
        target.seed = self

    def ids(self, flow: str, alias: str | None) -> str:
        return self._ids.get((flow, alias), MISSING_ID)

    def ensure(self) -> None:
        found = self.target.run(self._intact())
        if found is None:
            self.rebuild()
        else:
            self._ids = found

    async def _intact(self) -> dict[tuple[str, str | None], str] | None:
        store = self.target.store
        try:
            await store.get_flow(CF_EMPTY_FLOW)
            ids: dict[tuple[str, str | None], str] = {}
            for flow, aliases in ((CF_FLOW, CF_ALIASES), (BR_FLOW, (BR_ALIAS,))):
                snapshot = await store.snapshot(flow, by_id=False)
                ids[(flow, None)] = snapshot.flow.id
                by_name = {a.name: a.id for a in snapshot.aliases}
                for alias in aliases:
                    ids[(flow, alias)] = by_name[alias]
                for version in (1, 2):
                    await store.get_version(snapshot.flow.id, version)
        except (NotFound, KeyError):
            return None
        return ids

    def rebuild(self) -> None:
        self.rebuilds += 1
        t = self.target
        for name in (CF_FLOW, CF_EMPTY_FLOW, BR_FLOW):
            answer = t.cloudflow("DeleteFlow", Name=name)
            assert answer.status in (200, 404), f"seeding failed: {answer}"
        f1 = _ok(t.cloudflow("CreateFlow", Name=CF_FLOW, Definition="version: v1"))["Id"]
        for _ in range(2):
            _ok(t.cloudflow("PublishFlowVersion", FlowName=CF_FLOW))
        ids: dict[tuple[str, str | None], str] = {(CF_FLOW, None): f1}
        for name, routes in (("prod", [("1", 30), ("2", 70)]), ("canary", [("2", 1)])):
            config = json.dumps([{"Version": v, "Weight": w} for v, w in routes])
            _ok(
                t.cloudflow(
                    "CreateFlowAlias", FlowName=CF_FLOW, Name=name, RoutingConfigurations=config
                )
            )
        for alias in t.run(self.target.store.list_aliases(f1, 10)).items:
            ids[(CF_FLOW, alias.name)] = alias.id
        _ok(t.cloudflow("CreateFlow", Name=CF_EMPTY_FLOW, Definition="version: v1"))
        body = {"name": BR_FLOW, "executionRoleArn": ROLE, "definition": DEFINITION}
        b1 = _ok(t.bedrock("POST", "/flows/", body), 201)["id"]
        for _ in range(2):
            _ok(t.bedrock("POST", f"/flows/{b1}/versions", {}), 201)
        live = {"name": BR_ALIAS, "routingConfiguration": [{"flowVersion": "1"}]}
        alias = _ok(t.bedrock("POST", f"/flows/{b1}/aliases", live), 201)["id"]
        inputs = [{"nodeName": "FlowInputNode", "content": {"document": {"q": 1}}}]
        started = {"inputs": inputs, "flowExecutionName": "e1"}
        _ok(t.bedrock("POST", f"/flows/{b1}/aliases/{alias}/executions", started))
        ids[(BR_FLOW, None)] = b1
        ids[(BR_FLOW, BR_ALIAS)] = alias
        self._ids = ids


def send_cloudflow(target: Target, request: CfRequest) -> Answer:
    method, path, body, headers = request.encode()
    return target.client.send(method, path, body, headers)


def send_bedrock(target: Target, request: BrRequest) -> Answer:
    seed = target.seed
    ids = seed.ids if seed is not None else (lambda flow, alias: MISSING_ID)
    method, path, body, headers = encode_bedrock(request, ids, lambda: str(uuid.uuid4()))
    if "newline-in-path" in KNOWN_BUGS and newline_in_path(path):
        reject()
    return target.client.send(method, path, body, headers)


# -- the store walk ----------------------------------------------------------------------------

_CLOUDFLOW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
_BEDROCK_NAME = re.compile(r"(?:[0-9a-zA-Z][_-]?){1,100}")
_ID = re.compile(r"[0-9A-Z]{10}")


def _valid_name(name: str) -> bool:
    return bool(_CLOUDFLOW_NAME.fullmatch(name) or _BEDROCK_NAME.fullmatch(name))


async def _all(fetch: Any) -> list[Any]:
    items: list[Any] = []
    token: str | None = None
    for _ in range(10_000):
        page = await fetch(1000, token)
        items.extend(page.items)
        token = page.next_token
        if not token:
            return items
    raise AssertionError("paging never ended")


@dataclass
class StoreReport:
    flows: int = 0
    versions: int = 0
    aliases: int = 0
    keys: int = 0  # Redis keys seen by check_redis_keys
    dangling: list[str] = field(default_factory=list)  # alias -> deleted version


async def walk_store(store: Store, *, allow_dangling: bool) -> StoreReport:
    """Everything reachable through the Store protocol is whole and agrees with itself.

    ``allow_dangling``: an alias may route to a deleted version only after a
    Bedrock ``DeleteFlowVersion?skipResourceInUseCheck=true`` (the caller's
    explicit choice); any other path that leaves one is a partial write.
    """
    report = StoreReport()
    flows = await _all(store.list_flows)
    names = [f.name for f in flows]
    assert names == sorted(names), f"flows not in name order: {names}"
    assert len(set(names)) == len(names), f"a flow name is listed twice: {names}"
    assert len({f.id for f in flows}) == len(flows), "two flows share an id"
    for flow in flows:
        report.flows += 1
        where = f"flow {flow.name!r} ({flow.id})"
        assert _valid_name(flow.name), f"{where}: name matches neither API's pattern"
        assert _ID.fullmatch(flow.id), f"{where}: malformed id"
        assert await store.get_flow(flow.name) == flow, f"{where}: name index disagrees"
        assert await store.get_flow_by_id(flow.id) == flow, f"{where}: id lookup disagrees"
        assert len(flow.description) <= 256, f"{where}: description too long"
        versions = await _all(lambda n, t, f=flow: store.list_versions(f.id, n, t))
        numbers = [v.version for v in versions]
        assert numbers == sorted(set(numbers)), f"{where}: versions {numbers}"
        for version in versions:
            report.versions += 1
            assert version.flow_id == flow.id and version.version >= 1, (where, version)
            assert await store.get_version(flow.id, version.version) == version, (where, version)
        latest = await store.latest_version(flow.id)
        assert (latest.version if latest else None) == (max(numbers) if numbers else None), where
        aliases = await _all(lambda n, t, f=flow: store.list_aliases(f.id, n, t))
        alias_names = [a.name for a in aliases]
        assert alias_names == sorted(set(alias_names)), f"{where}: aliases {alias_names}"
        assert len({a.id for a in aliases}) == len(aliases), f"{where}: two aliases share an id"
        for alias in aliases:
            report.aliases += 1
            at = f"{where} alias {alias.name!r} ({alias.id})"
            assert alias.flow_id == flow.id, at
            assert _valid_name(alias.name) and not alias.name.isdigit(), f"{at}: bad name"
            assert _ID.fullmatch(alias.id), f"{at}: malformed id"
            assert await store.get_alias(flow.id, alias.name) == alias, f"{at}: by name"
            assert await store.get_alias_by_id(flow.id, alias.id) == alias, f"{at}: by id"
            routed = [r.version for r in alias.routes]
            assert 1 <= len(routed) <= 2, f"{at}: {len(routed)} routes"
            assert len(set(routed)) == len(routed), f"{at}: a version routed twice"
            assert all(0 <= r.weight <= MAX_WEIGHT for r in alias.routes), f"{at}: weight"
            assert any(r.weight > 0 for r in alias.routes), f"{at}: no positive weight"
            for number in routed:
                if number not in numbers:
                    report.dangling.append(f"{at} -> {number}")
        snapshot = await store.snapshot(flow.id, by_id=True)
        assert snapshot.flow == flow, f"{where}: snapshot flow differs"
        assert sorted(snapshot.aliases, key=lambda a: a.name) == aliases, (
            f"{where}: snapshot aliases differ from the listed ones"
        )
        by_name = await store.snapshot(flow.name, by_id=False)
        assert by_name.flow.id == flow.id, f"{where}: snapshot by name is another flow"
    assert allow_dangling or not report.dangling, f"aliases route to deleted versions: {report}"
    return report


def check_redis_keys(url: str, prefix: str) -> int:
    """No key outlives its flow, and every index agrees with the hash it indexes.

    The layout is the one documented in ``router/store/redis_codec.py`` (one
    server: the raw prefix and the prefix are the same). Returns the number of
    keys seen.
    """
    import redis

    client: Any = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        names = client.hgetall(f"{prefix}:flow_names")
        index = set(client.zrange(f"{prefix}:flow_index", 0, -1))
        assert set(names) == index, f"flow_names {sorted(names)} != flow_index {sorted(index)}"
        live = set(names.values())
        assert len(live) == len(names), f"two flow names map to one id: {names}"
        tagged = re.compile(re.escape(prefix) + r":\{flow:([^}]*)\}:(.*)")
        # execution records, their index, counters and statistics, in the flow's own slot
        executions = re.compile(re.escape(prefix) + r":x:\{([^}]*)\}:(.*)")
        shared = ("token:", "secret:", "bucket:", "polls:{")
        for key in keys:
            found = tagged.fullmatch(key)
            in_slot = executions.fullmatch(key)
            if in_slot is not None:
                # a deleted flow leaves only its tombstone, which stops late writes
                assert in_slot[1] in live or in_slot[2] == "gone", (
                    f"orphaned key {key!r}: flow {in_slot[1]} is gone"
                )
                continue
            if found is None:
                rest = key[len(prefix) + 1 :]
                assert rest in ("flow_names", "flow_index") or rest.startswith(shared), (
                    f"unexpected key {key!r}"
                )
                continue
            assert found[1] in live, f"orphaned key {key!r}: flow {found[1]} is gone"
        for name, flow_id in names.items():
            base = f"{prefix}:{{flow:{flow_id}}}:"
            assert client.hget(base + "meta", "name") == name, f"meta of {flow_id} is not {name}"
            versions = set(client.hkeys(base + "versions"))
            assert versions == set(client.zrange(base + "vindex", 0, -1)), f"vindex of {name}"
            aliases = set(client.hkeys(base + "aliases"))
            assert aliases == set(client.zrange(base + "alias_index", 0, -1)), (
                f"alias_index of {name}"
            )
            assert set(client.hvals(base + "alias_ids")) == aliases, f"alias_ids of {name}"
            slot = f"{prefix}:x:{{{flow_id}}}:"
            recorded = set(client.zrange(slot + "execs", 0, -1))
            stored = {k[len(slot) + 5 :] for k in keys if k.startswith(slot + "exec:")}
            assert recorded == stored, f"execs of {name}: index {recorded} != records {stored}"
        return len(keys)
    finally:
        client.close()
