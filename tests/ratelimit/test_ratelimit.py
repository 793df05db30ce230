"""Per-access-key rate limiting: the bucket, the store contract, both SDKs, two replicas."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_tea_openapi.exceptions import ThrottlingException

from router.ratelimit import Bucket, take
from router.store.base import Store
from router.store.memory import MemoryStore
from tests.auth.test_auth_sdk import CREDENTIALS, boto, cloudflow_client
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor

# -- the bucket arithmetic (the Lua script on Redis does the same) ------------------------


def test_a_new_bucket_allows_a_burst_then_asks_to_wait() -> None:
    bucket = None
    for _ in range(3):
        bucket, wait = take(bucket, 100.0, rate=2.0, burst=3)
        assert wait == 0
    bucket, wait = take(bucket, 100.0, rate=2.0, burst=3)
    assert wait == pytest.approx(0.5)  # one token at 2/s
    _, wait = take(bucket, 100.5, rate=2.0, burst=3)
    assert wait == 0


def test_refill_is_capped_at_the_burst() -> None:
    bucket, _ = take(Bucket(0.0, 0.0), 1000.0, rate=10.0, burst=4)
    assert bucket.tokens == 3.0  # refilled to 4, one taken


def test_a_clock_going_backwards_adds_nothing() -> None:
    bucket, wait = take(Bucket(0.0, 50.0), 40.0, rate=1.0, burst=5)
    assert wait == pytest.approx(1.0)
    assert bucket.tokens == 0.0


def test_the_store_does_not_import_the_rate_limiter() -> None:
    """The bucket arithmetic lives with the store: ``ratelimit`` imports the store, not back."""
    code = "import sys, router.store.memory; sys.exit('router.ratelimit' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=60)
    assert result.returncode == 0, "router.store imports router.ratelimit"


# -- the store contract: every store keeps buckets the same way ---------------------------


async def test_store_buckets(store: Store) -> None:
    key = f"k-{uuid.uuid4().hex}"
    waits = [await store.take_token(key, 1.0, 3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.5 < waits[3] <= 1.0  # about a second at 1/s; the clock moved a little
    assert await store.take_token(f"other-{key}", 1.0, 3) == 0.0  # buckets are per key


# -- end to end -------------------------------------------------------------------------


@pytest.fixture
def limited(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = MemoryStore()
    server = start_gateway(
        bg_loop,
        store,
        recording_executor,
        credentials=dict(CREDENTIALS),
        rate_limit=0.2,
        rate_burst=3,
    )
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


def _describe(client: Any) -> None:
    client.list_flows(models.ListFlowsRequest(limit=10))


def test_cloudflow_over_the_rate_is_throttled_with_retry_after(limited: GatewayServer) -> None:
    client = cloudflow_client(limited)
    for _ in range(3):
        _describe(client)
    with pytest.raises(ThrottlingException) as raised:
        _describe(client)
    assert raised.value.status_code == 429
    assert raised.value.code == "Throttling"
    assert raised.value.retry_after >= 1  # from x-acs-retry-after


def test_bedrock_over_the_rate_is_throttled(limited: GatewayServer) -> None:
    agent = boto("bedrock-agent", limited)
    for _ in range(3):
        agent.list_flows()
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        agent.list_flows()
    error = raised.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1


def test_the_limit_is_per_access_key(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    keys = {**CREDENTIALS, "AKIDOTHER": "other-secret"}
    store = MemoryStore()
    server = start_gateway(
        bg_loop, store, recording_executor, credentials=keys, rate_limit=0.2, rate_burst=2
    )
    try:
        first = cloudflow_client(server)
        for _ in range(2):
            _describe(first)
        with pytest.raises(ThrottlingException):
            _describe(first)
        _describe(cloudflow_client(server, "AKIDOTHER", "other-secret"))  # its own bucket
    finally:
        bg_loop.run(server.stop())


def test_replicas_on_redis_share_one_bucket(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    from router.store.redis import RedisStore

    server_url = request.getfixturevalue("redis_server").url
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stores = [RedisStore.from_url(server_url, prefix) for _ in range(2)]
    replicas = [
        start_gateway(
            bg_loop,
            s,
            recording_executor,
            credentials=dict(CREDENTIALS),
            rate_limit=0.2,
            rate_burst=4,
        )
        for s in stores
    ]
    try:
        a, b = (cloudflow_client(r) for r in replicas)
        for client in (a, b, a, b):
            _describe(client)
        for client in (a, b):  # the 4 tokens are spent, whichever replica is asked
            with pytest.raises(ThrottlingException):
                _describe(client)
    finally:
        for replica, store in zip(replicas, stores, strict=True):
            bg_loop.run(replica.stop())
            bg_loop.run(store.close())


def test_rate_limit_needs_credentials() -> None:
    from router.cli import _parser, config_from_args

    args = _parser().parse_args(["serve", "--rate-limit", "5"])
    with pytest.raises(ValueError, match="needs --credentials"):
        config_from_args(args)
