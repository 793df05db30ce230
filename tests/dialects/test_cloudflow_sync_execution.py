"""StartSyncExecution through the real fnf SDK: it answers the final status.

On the memory store and a real redis-server, in front of the protocol-v2 test
executor: an executor that finishes inside the start call, and one that
answers ``Running`` and finishes later, learned by polling or by its callback.
A run that is still going at ``--invoke-timeout`` is a 504 and keeps running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alibabacloud_fnf20190315.client import Client

from router.service import Settings
from tests.dialects.cloudflow_client import (
    assert_raw_error,
    cloudflow_error,
    create_alias,
    create_flow,
    raw_call,
    samples,
    scrape,
    value,
)
from tests.dialects.cloudflow_lifecycle import (
    Lifecycle,
    describe,
    history,
    lifecycle,
    list_all,
    start_sync,
    stop,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop

# The wait of a synchronous execution, for the test that runs out of it: long enough
# for the other tests' runs (a few ms), short enough to keep the suite quick.
INVOKE_TIMEOUT_S = 0.5
RESULTS = "flow_router_execution_results_total"


@pytest.fixture(params=GATEWAY_STORES)
def life(request: pytest.FixtureRequest, bg_loop: BackgroundLoop) -> Iterator[Lifecycle]:
    with lifecycle(request, bg_loop, request.param) as running:
        yield running


@pytest.fixture
def client(life: Lifecycle) -> Client:
    return life.client


def _polls(life: Lifecycle, name: str) -> int:
    return life.on_loop(lambda: life.executor.polls[name])


def test_a_synchronous_executor_answers_at_once(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=1)
    resp = start_sync(client, "f1", "1", '{"q": "hi"}', "s1")
    body = resp.body
    assert (body.name, body.flow_name, body.status) == ("s1", "f1", "Succeeded")
    assert json.loads(body.output) == {"ranOn": "1", "input": {"q": "hi"}}
    assert body.started_time <= body.stopped_time
    assert (body.error_code, body.error_message) == (None, None)
    assert body.environment is not None and not body.environment.variables
    assert resp.headers["x-flow-version"] == "1"
    assert describe(client, "f1", "s1").status == "Succeeded"


@pytest.mark.parametrize("callbacks", [False, True], ids=["polling", "callback"])
@pytest.mark.parametrize("kind", GATEWAY_STORES)
def test_an_asynchronous_executor_is_waited_for(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, kind: str, callbacks: bool
) -> None:
    with lifecycle(request, bg_loop, kind, callbacks=callbacks) as life:
        life.behave("*", mode="async", duration_ms=20)
        create_flow(life.client, "f1", versions=1)
        body = start_sync(life.client, "f1", "1", '{"n": 2}', "s1").body
        assert body.status == "Succeeded"
        assert json.loads(body.output) == {"ranOn": "1", "input": {"n": 2}}
        if callbacks:
            # the answer may overtake the executor's reading of the callback's 200
            life.wait(lambda: life.executor.callback_answers[200] >= 1)
            assert _polls(life, "s1") == 0  # pushed, never polled
        else:
            assert life.on_loop(lambda: life.executor.callbacks_sent) == 0
            assert _polls(life, "s1") >= 1
        assert describe(life.client, "f1", "s1").status == "Succeeded"


def test_a_failed_run_is_a_200_with_its_error(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=5, failure_ratio=1.0)
    create_flow(client, "f1", versions=1)
    body = start_sync(client, "f1", "1", name="s1").body
    assert body.status == "Failed"
    assert body.error_code == "Injected.Failure"
    assert body.error_message == "version 1 failed on purpose"
    assert body.output == ""


def test_through_an_alias(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=5)
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 1), ("2", 1))
    seen = set()
    for i in range(6):
        resp = start_sync(client, "f1", "prod", "{}", f"s{i}")
        assert resp.body.status == "Succeeded"
        version = resp.headers["x-flow-version"]
        assert json.loads(resp.body.output)["ranOn"] == version
        seen.add(version)
    assert seen <= {"1", "2"}
    assert life.on_loop(lambda: sum(life.executor.started.values())) == 6
    listed = list_all(client, "f1", qualifier="prod")
    assert sorted(e.name for e in listed) == [f"s{i}" for i in range(6)]


def test_unnamed_runs_get_a_name_and_a_history(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=5)
    create_flow(client, "f1", versions=1)
    body = start_sync(client, "f1", "1").body
    assert body.status == "Succeeded" and body.name
    events = history(client, "f1", body.name).events
    assert [e.type for e in events] == ["ExecutionStarted", "ExecutionSucceeded"]
    assert events[-1].time == body.stopped_time


@pytest.mark.parametrize("kind", GATEWAY_STORES)
def test_still_running_at_the_invoke_timeout(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, kind: str
) -> None:
    with lifecycle(
        request, bg_loop, kind, settings=Settings(invoke_timeout_s=INVOKE_TIMEOUT_S)
    ) as life:
        life.behave("*", mode="async", duration_ms=None)  # ends only when told
        create_flow(life.client, "f1", versions=1)
        with cloudflow_error(504, "ExecutionWaitTimeout") as raised:
            start_sync(life.client, "f1", "1", name="slow")
        assert "slow" in raised.message
        # it goes on running, and can be described, stopped and listed
        assert describe(life.client, "f1", "slow").status == "Running"
        assert stop(life.client, "f1", "slow").body.status == "Stopped"
        assert [e.name for e in list_all(life.client, "f1")] == ["slow"]


def test_bad_requests_send_nothing(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=1)
    with cloudflow_error(400, "InvalidArgument") as raised:
        start_sync(client, "f1", "1", "{not json")
    assert "Input" in raised.message
    with cloudflow_error(404, "FlowNotExists"):
        start_sync(client, "f2", "1")
    with cloudflow_error(404, "FlowVersionNotExists"):
        start_sync(client, "f1", "7")
    with cloudflow_error(404, "FlowAliasNotExists"):
        start_sync(client, "f1", "prod")
    with cloudflow_error(400, "InvalidArgument"):
        start_sync(client, "f1", "1", name="no spaces")
    answer = raw_call(life.gateway, "StartSyncExecution", {"Qualifier": "1"})
    assert_raw_error(answer, 400, "MissingRequiredParams")
    assert "FlowName" in answer.body["Message"]
    assert life.on_loop(lambda: sum(life.executor.started.values())) == 0


def test_a_name_is_used_once_per_flow(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=1)
    assert start_sync(client, "f1", "1", name="s1").body.status == "Succeeded"
    with cloudflow_error(409, "ExecutionAlreadyExists"):
        start_sync(client, "f1", "1", name="s1")
    assert life.on_loop(lambda: sum(life.executor.started.values())) == 1


@pytest.mark.parametrize("kind", GATEWAY_STORES)
def test_outcomes_are_counted_once_per_execution(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, kind: str
) -> None:
    """Each run's final body arrives twice by callback (and maybe by a poll): the
    per-version result counters still equal the executor's ground truth."""
    with lifecycle(request, bg_loop, kind, callbacks=True) as life:
        life.behave("1", mode="async", duration_ms=5, failure_ratio=0.5, callback_repeats=2)
        life.behave("2", mode="sync", failure_ratio=0.5)
        create_flow(life.client, "f1", versions=2)
        create_alias(life.client, "f1", "prod", ("1", 1), ("2", 1))
        answered = [start_sync(life.client, "f1", "prod", "{}").body.status for _ in range(12)]
        life.wait(lambda: life.executor.final_count() == 12)
        repeats = 2 * life.on_loop(lambda: life.executor.final_count("1"))
        life.wait(lambda: sum(life.executor.callback_answers.values()) == repeats)
        truth = life.on_loop(lambda: dict(life.executor.finals))
        assert sorted(answered) == sorted(s for (_, s), n in truth.items() for _ in range(n))
        scraped = scrape(life.gateway)
        for (version, status), n in truth.items():
            labels = {"flow": "f1", "alias": "prod", "version": version, "status": status}
            assert value(scraped, RESULTS, **labels) == n, labels
        counted = sum(s.value for s in samples(scraped, RESULTS, flow="f1"))
        assert counted == 12
