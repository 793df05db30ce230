"""Issue 11 through boto3: asynchronous executions in the Bedrock dialect, callbacks,
and outcomes counted once, against the protocol-v2 test executor's ground truth.

Each scenario runs on the memory store and on a real redis-server.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from router.lifecycle.status import Status
from router.service import Settings
from tests.async_executor import Behaviour
from tests.dialects import cloudflow_client as cf
from tests.dialects.bedrock_client import (
    agent_client,
    alias_arn,
    bedrock_error,
    create_alias,
    create_flow,
    invoke,
    runtime_client,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop
from tests.lifecycle_rig import Rig, rig
from tests.plugin import open_store

RESULTS = "flow_router_execution_results_total"
HELD = Behaviour(mode="async", duration_ms=None)  # ends only when the test says so


@pytest.fixture(params=GATEWAY_STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def held(request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str) -> Iterator[Rig]:
    store = open_store(store_kind, request)
    with rig(bg_loop, store, {"*": HELD}) as r:
        yield r
    bg_loop.run(store.close())


def _clients(r: Rig) -> tuple[Any, Any]:
    return agent_client(r.server), runtime_client(r.server)


def _flow(agent: Any) -> tuple[str, str]:
    flow_id = create_flow(agent, "f1", versions=1)
    return flow_id, create_alias(agent, flow_id, "prod", "1")


def _get(runtime: Any, flow_id: str, alias_id: str, execution: str) -> dict[str, Any]:
    got: dict[str, Any] = runtime.get_flow_execution(
        flowIdentifier=flow_id, flowAliasIdentifier=alias_id, executionIdentifier=execution
    )
    return got


def test_async_start_describe_stop_and_list(held: Rig) -> None:
    agent, runtime = _clients(held)
    flow_id, alias_id = _flow(agent)
    ids = {"flowIdentifier": flow_id, "flowAliasIdentifier": alias_id}
    runtime.start_flow_execution(flowExecutionName="runs-then-ends", inputs=_inputs(), **ids)
    runtime.start_flow_execution(flowExecutionName="gets-stopped", inputs=_inputs(), **ids)

    running = _get(runtime, flow_id, alias_id, "runs-then-ends")
    assert (running["status"], running["flowVersion"]) == ("Running", "1")
    assert "endedAt" not in running

    assert held.finish("runs-then-ends", "Succeeded")
    ended = _get(runtime, flow_id, alias_id, "runs-then-ends")  # asks the executor: final
    assert ended["status"] == "Succeeded" and ended["endedAt"] >= ended["startedAt"]

    stopped = runtime.stop_flow_execution(executionIdentifier="gets-stopped", **ids)
    assert stopped["status"] == "Aborted"
    assert held.executor.stops["1"] == 1
    assert _get(runtime, flow_id, alias_id, "gets-stopped")["status"] == "Aborted"
    with bedrock_error(runtime, "ConflictException", 409) as raised:
        runtime.stop_flow_execution(executionIdentifier="gets-stopped", **ids)
    assert "Aborted" in raised.message
    assert held.executor.stops["1"] == 1  # a final record: the executor was not asked

    summaries = runtime.list_flow_executions(flowIdentifier=flow_id)["flowExecutionSummaries"]
    assert [(s["executionArn"].rsplit("/", 1)[1], s["status"]) for s in summaries] == [
        ("gets-stopped", "Aborted"),  # newest first
        ("runs-then-ends", "Succeeded"),
    ]
    assert all(s["endedAt"] for s in summaries)
    assert held.finals("f1") == {("1", "Succeeded"): 1, ("1", "Aborted"): 1}


def test_stop_of_an_execution_the_executor_finished_meanwhile(held: Rig) -> None:
    agent, runtime = _clients(held)
    flow_id, alias_id = _flow(agent)
    ids = {"flowIdentifier": flow_id, "flowAliasIdentifier": alias_id}
    runtime.start_flow_execution(flowExecutionName="raced", inputs=_inputs(), **ids)
    held.finish("raced", "Failed", error="Boom", cause="it broke")
    # The record still says Running; the executor answers 409 with the final body.
    with bedrock_error(runtime, "ConflictException", 409) as raised:
        runtime.stop_flow_execution(executionIdentifier="raced", **ids)
    assert "Failed" in raised.message
    got = _get(runtime, flow_id, alias_id, "raced")
    assert got["status"] == "Failed"
    assert got["errors"] == [{"nodeName": "FlowOutputNode", "error": "Boom", "message": "it broke"}]
    assert held.finals("f1") == {("1", "Failed"): 1}


def _inputs() -> list[dict[str, Any]]:
    return [{"nodeName": "FlowInputNode", "nodeOutputName": "document", "content": {"document": 1}}]


@pytest.mark.parametrize("callbacks", [False, True], ids=["polling", "callbacks"])
def test_invoke_flow_waits_for_an_asynchronous_execution(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str, callbacks: bool
) -> None:
    store = open_store(store_kind, request)
    behaviour = Behaviour(mode="async", duration_ms=150)
    with rig(bg_loop, store, {"*": behaviour}, callbacks=callbacks) as r:
        agent, runtime = _clients(r)
        flow_id, alias_id = _flow(agent)
        invoked = invoke(runtime, flow_id, alias_id, {"n": 5})
        kinds = [next(iter(e)) for e in invoked.events]
        assert kinds == ["flowOutputEvent", "flowCompletionEvent"], invoked.events
        document = invoked.events[0]["flowOutputEvent"]["content"]["document"]
        assert document == {"ranOn": "1", "input": {"n": 5}}
        assert r.executor.final_count() == 1
        polls = sum(r.executor.polls.values())
        if callbacks:
            assert polls == 0  # the callback ended it: no executor was polled
            assert r.executor.callback_answers == {200: 1}
        else:
            assert polls >= 1
        summaries = runtime.list_flow_executions(flowIdentifier=flow_id)["flowExecutionSummaries"]
        assert [s["status"] for s in summaries] == ["Succeeded"]
        assert r.finals("f1") == {("1", "Succeeded"): 1}
    bg_loop.run(store.close())


def test_invoke_flow_is_bounded_by_the_invoke_timeout(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str
) -> None:
    store = open_store(store_kind, request)
    settings = Settings(invoke_timeout_s=0.3)
    with rig(bg_loop, store, {"*": HELD}, settings=settings) as r:
        agent, runtime = _clients(r)
        flow_id, alias_id = _flow(agent)
        invoked = runtime.invoke_flow(
            flowIdentifier=flow_id, flowAliasIdentifier=alias_id, inputs=_inputs()
        )
        with pytest.raises(Exception) as caught:
            list(invoked["responseStream"])
        error = getattr(caught.value, "response", {}).get("Error", {})
        assert error.get("Code") == "dependencyFailedException", caught.value
        assert "did not finish within 0.3s" in error.get("Message", "")
        assert r.executor.final_count() == 0  # it keeps running
    bg_loop.run(store.close())


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_callbacks_forged_are_refused_and_repeats_count_once(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str
) -> None:
    store = open_store(store_kind, request)
    behaviour = Behaviour(mode="async", duration_ms=None, callback_repeats=3)
    with rig(bg_loop, store, {"*": behaviour}, callbacks=True) as r:
        agent, runtime = _clients(r)
        flow_id, alias_id = _flow(agent)
        ids = {"flowIdentifier": flow_id, "flowAliasIdentifier": alias_id}
        runtime.start_flow_execution(flowExecutionName="e1", inputs=_inputs(), **ids)
        runtime.start_flow_execution(flowExecutionName="e2", inputs=_inputs(), **ids)
        callback = r.executor._by_name["e1"].callback
        assert callback is not None and callback.startswith(
            f"{r.server.url}/_callback/{flow_id}/e1/"
        )
        final = b'{"status": "Succeeded", "output": "forged"}'
        token = callback.rsplit("/", 1)[1]
        forged = [
            callback[: -len(token)] + "A" * len(token),  # not the HMAC
            callback.replace("/e1/", "/e2/"),  # e1's token for e2
            f"{r.server.url}/_callback/{flow_id}/e1/",  # none at all
        ]
        assert [_post(url, final) for url in forged] == [403, 403, 404]
        assert _post(callback, b"not json") == 400
        assert _post(callback, b'{"status": "Running"}') == 400
        assert _get(runtime, flow_id, alias_id, "e1")["status"] == "Running"
        assert r.executor.polls["e1"] == 1  # that describe; nothing was written

        r.finish("e1", "Succeeded")  # POSTs its final body three times
        r.run(r.executor.wait_until(lambda: r.executor.callbacks_sent == 3))
        assert r.executor.callback_answers == {200: 3}
        assert r.wait_final("f1", "e1").status is Status.SUCCEEDED
        assert r.finals("f1") == {("1", "Succeeded"): 1}
        scraped = cf.scrape(r.server)
        labels = {"flow": "f1", "alias": "prod", "version": "1"}
        assert cf.value(scraped, RESULTS, status="Succeeded", **labels) == 1
    bg_loop.run(store.close())


@pytest.mark.parametrize("callbacks", [False, True], ids=["polling", "callbacks"])
def test_outcome_counters_equal_the_executors_ground_truth(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str, callbacks: bool
) -> None:
    store = open_store(store_kind, request)
    behaviours = {
        "1": Behaviour(mode="async", duration_ms=30, failure_ratio=0.1),
        "2": Behaviour(mode="async", duration_ms=60, failure_ratio=0.4),
        "3": Behaviour(mode="sync", failure_ratio=0.5),
    }
    with rig(bg_loop, store, behaviours, callbacks=callbacks) as r:
        client = cf.client_for(r.server)
        cf.create_flow(client, "f1", versions=3)
        cf.create_alias(client, "f1", "prod", ("1", 50), ("2", 50))
        names = [cf.start(client, "f1", "prod", "{}").body.name for _ in range(40)]
        names += [cf.start(client, "f1", "3", "{}").body.name for _ in range(10)]
        r.run(r.executor.wait_until(lambda: r.executor.final_count() == 50))
        for name in names:
            r.wait_final("f1", name)
        truth = dict(r.executor.finals)
        assert sum(truth.values()) == 50 and len({v for v, _ in truth}) == 3
        assert r.finals("f1") == truth
        scraped = cf.scrape(r.server)
        for (version, status), n in truth.items():
            alias = "" if version == "3" else "prod"
            got = cf.value(scraped, RESULTS, flow="f1", alias=alias, version=version, status=status)
            assert got == n, (version, status)
        assert r.executor.duplicates == 0
    bg_loop.run(store.close())


def test_invoke_flow_executions_are_listed_with_their_alias(held: Rig) -> None:
    agent, runtime = _clients(held)
    flow_id, alias_id = _flow(agent)
    held.executor.behaviours["*"] = Behaviour(mode="sync")
    invoked = invoke(runtime, flow_id, alias_id)
    held.run(held.server.flushed())
    (summary,) = runtime.list_flow_executions(flowIdentifier=flow_id)["flowExecutionSummaries"]
    assert (
        summary["executionArn"]
        == f"{alias_arn(flow_id, alias_id)}/execution/{invoked.execution_id}"
    )
    got = _get(runtime, flow_id, alias_id, summary["executionArn"])
    assert (got["status"], got["flowVersion"]) == ("Succeeded", "1")
