"""Signed executions keep routing while Redis hangs (``DEBUG SLEEP``).

A gateway with credentials (and a rate limit, or not) runs on its own
redis-server, whose client socket timeout (10 s) is longer than the sleep: a
store call that is not bounded by the gateway itself waits for the sleep to end.
While the server sleeps, signed StartExecution requests through a cached alias
must all be answered before ``DEBUG SLEEP`` returns: let in with
``--auth-store-failure open``, refused as ServiceUnavailable with ``closed``,
and each counted in ``flow_router_auth_store_degraded_total``. Ordering is
checked with events (answered before the sleep returned), not with timings.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.service import Settings
from router.store.redis import RedisStore
from tests.auth.signing import CREDENTIALS, Answer, query_string, rpc_params, send
from tests.auth.test_auth_sdk import cloudflow_client
from tests.conftest import RedisServer, redis_binary, start_on_free_port
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor

SLEEP_S = 4  # how long Redis hangs; the store's own socket timeout is longer
REQUESTS = 40
SENDERS = 4
DEGRADED = "flow_router_auth_store_degraded_total"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test alone uses: it is put to sleep."""
    server = RedisServer(redis_binary(), tmp_path, ("--enable-debug-command", "local"))
    start_on_free_port(server)
    yield server
    server.stop()


class Hang:
    """``DEBUG SLEEP`` on a thread; ``returned`` is set once the server answers it."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.returned = threading.Event()
        self.error: redis.exceptions.RedisError | None = None
        self._sent = threading.Event()
        self._thread = threading.Thread(target=self._sleep, daemon=True)

    def _sleep(self) -> None:
        client = redis.Redis(
            port=self.server.port, socket_timeout=SLEEP_S + 30, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()  # connected: only the command itself is left to send
            self._sent.set()
            client.execute_command("DEBUG", "SLEEP", str(SLEEP_S))
        except redis.exceptions.RedisError as e:
            self.error = e
        finally:
            self.returned.set()
            client.close()

    def __enter__(self) -> Hang:
        self._thread.start()
        assert self._sent.wait(10)
        # Asleep once another client's PING goes unanswered (polled, at most 500 times).
        probe = redis.Redis(port=self.server.port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
        try:
            for _ in range(500):
                assert not self.returned.is_set(), f"DEBUG SLEEP failed: {self.error!r}"
                try:
                    probe.ping()
                except redis.exceptions.TimeoutError:
                    return self
                time.sleep(0.01)  # the thread has not sent DEBUG SLEEP yet
        finally:
            probe.close()
        raise AssertionError("redis-server never stopped answering")

    def __exit__(self, *exc: object) -> None:
        self._thread.join(SLEEP_S + 60)
        assert self.error is None, f"DEBUG SLEEP failed: {self.error!r}"


def _execute(gateway: GatewayServer) -> Answer:
    """One signed (RPC v1, fresh nonce) StartExecution through the alias."""
    params = rpc_params("StartExecution", {"FlowName": "orders", "Qualifier": "prod"})
    return send("GET", f"{gateway.url}/?{query_string(params)}")


def _degraded(gateway: GatewayServer, check: str, decision: str) -> float:
    return cf.value(cf.scrape(gateway), DEGRADED, check=check, decision=decision) or 0.0


@pytest.mark.parametrize(
    ("rate_limit", "failure"),
    [(1000.0, "open"), (None, "open"), (1000.0, "closed")],
    ids=["rate-limit-open", "nonces-only-open", "rate-limit-closed"],
)
def test_signed_executions_are_answered_while_redis_hangs(
    own_redis: RedisServer,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    rate_limit: float | None,
    failure: str,
) -> None:
    url = own_redis.url + "?socket_timeout=10"
    store = RedisStore.from_url(url, f"t{uuid.uuid4().hex[:8]}")
    config: dict[str, Any] = {
        "credentials": dict(CREDENTIALS),
        "rate_limit": rate_limit,
        "auth_store_failure": failure,
        # No periodic revision check during the test: only the signature path is measured.
        "settings": Settings(cache_check_interval_s=3600),
    }
    gateway = start_gateway(bg_loop, store, recording_executor, **config)
    try:
        client = cloudflow_client(gateway)
        cf.create_flow(client, "orders", versions=1)
        cf.create_alias(client, "orders", "prod", ("1", 100))
        assert _execute(gateway).status == 200  # warms the route cache
        seen = len(recording_executor.records)

        with Hang(own_redis) as hang, ThreadPoolExecutor(SENDERS) as senders:
            answers = list(senders.map(lambda _: _execute(gateway), range(REQUESTS)))
            answered_while_asleep = not hang.returned.is_set()

        assert answered_while_asleep, "a signed request waited for the hung store"
        if failure == "open":
            assert [a.status for a in answers] == [200] * REQUESTS
            assert len(recording_executor.records) == seen + REQUESTS
            assert _degraded(gateway, "nonce", "allowed") == REQUESTS
            expected = REQUESTS if rate_limit else 0
            assert _degraded(gateway, "ratelimit", "allowed") == expected
        else:
            codes = {(a.status, json.loads(a.body)["Code"]) for a in answers}
            assert codes == {(503, "ServiceUnavailable")}
            assert len(recording_executor.records) == seen  # refused before anything ran
            assert _degraded(gateway, "nonce", "refused") == REQUESTS
    finally:
        bg_loop.run(gateway.stop())
        bg_loop.run(store.close())
