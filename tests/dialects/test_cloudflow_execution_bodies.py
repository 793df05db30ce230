"""Issue 11 through alibabacloud-fnf20190315: StartExecution and DescribeExecution
answer from the execution's record, with an asynchronous executor.

Running, then Succeeded / Failed / TimedOut / Stopped with ``Output`` and
``StoppedTime``; an execution started without a name has its real ``StartedTime``
and ``Input``. On the memory store and on a real redis-server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alibabacloud_fnf20190315 import models

from router.lifecycle.status import Status
from tests.async_executor import Behaviour
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop
from tests.lifecycle_rig import Rig, rig
from tests.plugin import open_store


@pytest.fixture(params=GATEWAY_STORES)
def held(request: pytest.FixtureRequest, bg_loop: BackgroundLoop) -> Iterator[Rig]:
    store = open_store(request.param, request)
    with rig(bg_loop, store, {"*": Behaviour(mode="async", duration_ms=None)}) as r:
        yield r
    bg_loop.run(store.close())


def _describe(r: Rig, name: str) -> models.DescribeExecutionResponseBody:
    request = models.DescribeExecutionRequest(flow_name="f1", execution_name=name)
    body: models.DescribeExecutionResponseBody = (
        cf.client_for(r.server).describe_execution(request).body
    )
    return body


def test_running_then_each_final_status(held: Rig) -> None:
    client = cf.client_for(held.server)
    cf.create_flow(client, "f1", versions=1)
    cf.create_alias(client, "f1", "prod", ("1", 100))
    started = cf.start(client, "f1", "prod", '{"n": 1}', name="ok").body
    assert (started.status, started.stopped_time) == ("Running", "")
    assert started.input == '{"n": 1}'
    described = _describe(held, "ok")
    assert (described.status, described.stopped_time, described.output) == ("Running", "", "")

    ends = {"ok": "Succeeded", "bad": "Failed", "slow": "TimedOut"}
    for name in ("bad", "slow"):
        cf.start(client, "f1", "prod", "{}", name=name)
    for name, status in ends.items():
        assert held.finish(name, status)
        body = _describe(held, name)
        assert body.status == status
        assert body.stopped_time >= body.started_time > "1970"
    assert _describe(held, "ok").output == '{"ranOn":"1","input":{"n":1}}'

    cf.start(client, "f1", "prod", "{}", name="halted")

    async def stop() -> None:
        flow = await held.gateway.flow("f1")
        await held.gateway.stop_execution(flow, "halted", "Halt", "by the test")

    held.run(stop())
    assert _describe(held, "halted").status == "Stopped"  # CloudFlow's name for Aborted
    assert held.finals("f1") == {
        ("1", "Succeeded"): 1, ("1", "Failed"): 1, ("1", "TimedOut"): 1, ("1", "Aborted"): 1,
    }  # fmt: skip


def test_an_unnamed_execution_has_its_start_time_and_input(held: Rig) -> None:
    client = cf.client_for(held.server)
    cf.create_flow(client, "f1", versions=1)
    cf.create_alias(client, "f1", "prod", ("1", 100))
    started = cf.start(client, "f1", "prod", '{"order": 7}').body
    assert started.status == "Running" and started.name
    running = _describe(held, started.name)  # maybe still in the journal: the executor answers
    assert running.status == "Running"
    held.run(held.server.flushed())
    described = _describe(held, started.name)
    assert described.started_time == started.started_time > "1970"
    assert described.input == '{"order":7}'
    held.finish(started.name, "Succeeded")
    assert held.wait_final("f1", started.name).status is Status.SUCCEEDED
    assert _describe(held, started.name).status == "Succeeded"
