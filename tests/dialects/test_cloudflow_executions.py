"""StopExecution, ListExecutions and GetExecutionHistory through the real fnf SDK.

Each test runs on the memory store and on a real redis-server, in front of the
protocol-v2 test executor (tests/async_executor.py): asynchronous runs stay
``Running`` until the test, the executor or a stop ends them, and the
executor's counters are the ground truth of what reached it. StartSyncExecution
is in ``test_cloudflow_sync_execution.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client

from tests.dialects.cloudflow_client import (
    DEFINITION,
    assert_raw_error,
    cloudflow_error,
    create_alias,
    create_flow,
    raw_call,
    start,
)
from tests.dialects.cloudflow_lifecycle import (
    Lifecycle,
    describe,
    history,
    lifecycle,
    list_all,
    list_page,
    start_sync,
    stop,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop

ISO_8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(params=GATEWAY_STORES)
def life(request: pytest.FixtureRequest, bg_loop: BackgroundLoop) -> Iterator[Lifecycle]:
    with lifecycle(request, bg_loop, request.param) as running:
        yield running


@pytest.fixture
def client(life: Lifecycle) -> Client:
    return life.client


def _stops(life: Lifecycle) -> int:
    return life.on_loop(lambda: sum(life.executor.stops.values()))


def _started(life: Lifecycle) -> int:
    return life.on_loop(lambda: sum(life.executor.started.values()))


# -- StopExecution ----------------------------------------------------------------------


def test_stop_ends_a_running_execution_as_stopped(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    started = start(client, "f1", "1", '{"a": 1}', "e1").body
    assert started.status == "Running"

    resp = stop(client, "f1", "e1", "Manual.Stop", "the operator asked")
    body = resp.body
    assert (body.name, body.flow_name, body.status) == ("e1", "f1", "Stopped")
    assert body.started_time == started.started_time
    assert ISO_8601.fullmatch(body.stopped_time) and body.stopped_time >= body.started_time
    assert json.loads(body.input) == {"a": 1}
    assert body.flow_definition == DEFINITION
    assert resp.headers["x-flow-version"] == "1"
    assert isinstance(body.request_id, str) and body.request_id

    # the executor was told, with the caller's error and cause, exactly once
    assert _stops(life) == 1
    run = life.on_loop(lambda: next(r for r in life.executor.runs.values() if r.name == "e1"))
    assert (run.status, run.error, run.cause) == ("Aborted", "Manual.Stop", "the operator asked")

    described = describe(client, "f1", "e1")
    assert (described.status, described.stopped_time) == ("Stopped", body.stopped_time)


def test_stop_twice_is_execution_already_completed(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    stop(client, "f1", "e1")
    with cloudflow_error(400, "ExecutionAlreadyCompleted") as raised:
        stop(client, "f1", "e1")
    assert raised.message == "Execution 'e1' for flow 'f1' has already completed."
    assert _stops(life) == 1  # the second stop never reached the executor
    assert describe(client, "f1", "e1").status == "Stopped"


def test_stop_of_a_succeeded_execution_changes_nothing(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=1)  # the executor finishes inside the start call
    assert start(client, "f1", "1", name="e1").body.status == "Succeeded"
    with cloudflow_error(400, "ExecutionAlreadyCompleted"):
        stop(client, "f1", "e1", "Late.Stop")
    assert _stops(life) == 0
    described = describe(client, "f1", "e1")
    assert described.status == "Succeeded"
    assert json.loads(described.output)["ranOn"] == "1"


def test_stop_after_the_executor_finished_on_its_own(life: Lifecycle, client: Client) -> None:
    """The gateway may not know yet (no callback, poll not due): the executor's 409
    says so, and the execution shows the executor's final status, not Stopped."""
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    assert life.finish("e1", "Succeeded", output={"done": True})
    with cloudflow_error(400, "ExecutionAlreadyCompleted"):
        stop(client, "f1", "e1")
    described = describe(client, "f1", "e1")
    assert (described.status, json.loads(described.output)) == ("Succeeded", {"done": True})
    assert _stops(life) == 0


def test_stop_an_execution_started_without_a_name(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    name = start(client, "f1", "1").body.name
    assert stop(client, "f1", name).body.status == "Stopped"
    assert describe(client, "f1", name).status == "Stopped"
    assert _stops(life) == 1


def test_stop_errors_name_what_is_wrong(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    with cloudflow_error(404, "ExecutionNotExists"):
        stop(client, "f1", "nope")
    with cloudflow_error(404, "FlowNotExists"):
        stop(client, "f2", "e1")
    with cloudflow_error(400, "MissingRequiredParams") as raised:
        stop(client, "f1", None)
    assert "ExecutionName" in raised.message
    with cloudflow_error(400, "InvalidArgument") as raised:
        stop(client, "f1", "e1", error="E" * 129)
    assert "Error" in raised.message
    with cloudflow_error(400, "InvalidArgument") as raised:
        stop(client, "f1", "e1", cause="c" * 4097)
    assert "Cause" in raised.message
    assert _stops(life) == 0
    assert describe(client, "f1", "e1").status == "Running"


# -- ListExecutions ---------------------------------------------------------------------


def _mixed_executions(life: Lifecycle, client: Client) -> dict[str, str]:
    """Version 1 runs stay Running, version 2 ones succeed at once; named and unnamed,
    by version and through the alias. Returns name -> how it was started."""
    life.behave("1", mode="async", duration_ms=None)
    life.behave("2", mode="sync")
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 1), ("2", 1))
    how: dict[str, str] = {}
    for qualifier, name in [
        ("1", "run-a"), ("2", "run-b"), ("1", None), ("2", None),
        ("prod", "alias-a"), ("prod", "alias-b"), ("prod", None), ("prod", None),
    ]:  # fmt: skip
        how[start(client, "f1", qualifier, '{"n": 1}', name).body.name] = qualifier
    life.settle()  # the unnamed ones are in the store, not only in the journal
    return how


def test_list_shows_every_execution_newest_first(life: Lifecycle, client: Client) -> None:
    how = _mixed_executions(life, client)
    listed = list_all(client, "f1")
    assert sorted(e.name for e in listed) == sorted(how)  # unnamed ones included, once each
    times = [e.started_time for e in listed]
    assert times == sorted(times, reverse=True)
    for item in listed:
        described = describe(client, "f1", item.name)
        assert (item.flow_name, item.status, item.started_time) == (
            "f1",
            described.status,
            described.started_time,
        )
        assert json.loads(item.input) == {"n": 1}
        assert item.flow_definition == DEFINITION
        assert item.status in ("Running", "Succeeded")
        assert (item.stopped_time == "") == (item.status == "Running")


def test_list_filters(life: Lifecycle, client: Client) -> None:
    how = _mixed_executions(life, client)
    stop(client, "f1", "run-a")

    def names(**filters: Any) -> set[str]:
        return {e.name for e in list_all(client, "f1", **filters)}

    by_version = {n: describe(client, "f1", n).status for n in how}
    assert names(status="Stopped") == {"run-a"}
    running = {n for n, s in by_version.items() if s == "Running"}
    assert names(status="Running") == running
    assert names(status="Succeeded") == {n for n, s in by_version.items() if s == "Succeeded"}
    assert names(status="Failed") == set()
    assert names(status="Starting") == set()  # documented, never the gateway's
    assert names(qualifier="prod") == {n for n, q in how.items() if q == "prod"}
    assert "run-b" in names(qualifier="2") and "run-a" not in names(qualifier="2")
    assert names(qualifier="1") | names(qualifier="2") == set(how)
    assert names(qualifier="canary") == set()  # no such alias: nothing started through it
    assert names(execution_name_prefix="alias-") == {"alias-a", "alias-b"}
    assert names(execution_name_prefix="run-", status="Succeeded") == {"run-b"}

    one = next(e for e in list_all(client, "f1") if e.name == "run-b")
    at = one.started_time
    same_ms = names(started_time_begin=at, started_time_end=at)
    assert "run-b" in same_ms
    assert all(describe(client, "f1", n).started_time == at for n in same_ms)
    newer = names(started_time_begin=at)
    older = names(started_time_end=at)
    assert newer | older == set(how) and newer & older == same_ms
    assert names(started_time_begin="2999-01-01T00:00:00Z") == set()
    assert names(started_time_end="2000-01-01T00:00:00+08:00") == set()


def test_list_pages_with_limit_and_next_token(life: Lifecycle, client: Client) -> None:
    how = _mixed_executions(life, client)
    first = list_page(client, "f1", limit=3)
    assert len(first.executions) == 3 and first.next_token
    pages = list_all(client, "f1", limit=3)
    assert [e.name for e in pages] == [e.name for e in list_all(client, "f1")]
    assert sorted(e.name for e in pages) == sorted(how)
    last = list_page(client, "f1", limit=100)
    assert len(last.executions) == len(how) and last.next_token is None


def test_list_metadata_only_leaves_the_documents_out(life: Lifecycle, client: Client) -> None:
    how = _mixed_executions(life, client)
    lean = list_all(client, "f1", metadata_only=True)
    assert sorted(e.name for e in lean) == sorted(how)
    for item in lean:
        assert (item.input, item.output, item.flow_definition) == (None, None, None)
        assert item.status and ISO_8601.fullmatch(item.started_time)
    full = list_all(client, "f1", metadata_only=False)
    assert all(item.input and item.flow_definition == DEFINITION for item in full)


BAD_LIST_PARAMETERS = [
    ({"Status": "Bogus"}, "Status"),
    ({"Status": "running"}, "Status"),  # the API's own spelling only
    ({"Status": "Aborted"}, "Status"),  # Bedrock's name; CloudFlow says Stopped
    ({"StartedTimeBegin": "yesterday"}, "StartedTimeBegin"),
    ({"StartedTimeBegin": "2020-12-02"}, "StartedTimeBegin"),
    ({"StartedTimeBegin": "2020-12-02T02:39:20"}, "StartedTimeBegin"),  # no zone
    ({"StartedTimeEnd": "2020-13-02T00:00:00Z"}, "StartedTimeEnd"),
    ({"StartedTimeEnd": "2021-02-29T00:00:00Z"}, "StartedTimeEnd"),
    ({"StartedTimeBegin": "2021-01-02T00:00:00Z", "StartedTimeEnd": "2021-01-01T00:00:00Z"},
     "StartedTimeBegin"),
    ({"Limit": "0"}, "Limit"),
    ({"Limit": "101"}, "Limit"),
    ({"Limit": "-1"}, "Limit"),
    ({"Limit": "ten"}, "Limit"),
    ({"Limit": "1" * 30}, "Limit"),
    ({"MetadataOnly": "maybe"}, "MetadataOnly"),
    ({"NextToken": "not-a-token"}, "NextToken"),
    ({"Qualifier": "0"}, "Qualifier"),
    ({"Qualifier": "no spaces"}, "Qualifier"),
    ({"ExecutionNamePrefix": "p" * 129}, "ExecutionNamePrefix"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "field"), BAD_LIST_PARAMETERS)
def test_list_rejects_a_bad_parameter_naming_it(
    life: Lifecycle, client: Client, params: dict[str, str], field: str
) -> None:
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    answer = raw_call(life.gateway, "ListExecutions", {"FlowName": "f1", **params}, "GET")
    assert_raw_error(answer, 400, "InvalidArgument")
    assert field in answer.body["Message"]


def test_list_errors_through_the_sdk(client: Client) -> None:
    with cloudflow_error(404, "FlowNotExists"):
        list_page(client, "nope")
    with cloudflow_error(400, "MissingRequiredParams"):
        list_page(client, "")
    create_flow(client, "f1", versions=1)
    for limit in (0, 101):
        with cloudflow_error(400, "InvalidArgument") as raised:
            list_page(client, "f1", limit=limit)
        assert "Limit" in raised.message
    assert list_page(client, "f1").executions == []


# -- GetExecutionHistory ----------------------------------------------------------------


def _check_events(events: list[Any]) -> None:
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert [e.schedule_event_id for e in events] == list(range(len(events)))
    times = [e.time for e in events]
    assert all(ISO_8601.fullmatch(t) for t in times) and times == sorted(times)
    assert all(isinstance(json.loads(e.event_detail), dict) for e in events)


def test_history_of_a_stopped_execution(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 1), ("2", 1))
    version = start(client, "f1", "prod", name="e1").headers["x-flow-version"]

    running = history(client, "f1", "e1").events
    assert [e.type for e in running] == ["ExecutionStarted"]
    detail = json.loads(running[0].event_detail)
    assert (str(detail.get("version")), detail.get("alias")) == (version, "prod")

    stop(client, "f1", "e1", "Manual.Stop", "the operator asked")
    events = history(client, "f1", "e1").events
    _check_events(events)
    assert (events[0].type, events[-1].type) == ("ExecutionStarted", "ExecutionStopped")
    assert "Manual.Stop" in events[-1].event_detail
    assert events[-1].time == describe(client, "f1", "e1").stopped_time


@pytest.mark.parametrize(("ratio", "last"), [(0.0, "ExecutionSucceeded"), (1.0, "ExecutionFailed")])
def test_history_of_a_finished_execution(
    life: Lifecycle, client: Client, ratio: float, last: str
) -> None:
    life.behave("*", mode="sync", failure_ratio=ratio)
    create_flow(client, "f1", versions=1)
    name = start(client, "f1", "1").body.name  # unnamed: its record is journaled
    events = history(client, "f1", name).events
    _check_events(events)
    assert [e.type for e in events] == ["ExecutionStarted", last]
    if last == "ExecutionFailed":
        assert "Injected.Failure" in events[-1].event_detail


def test_history_pages(life: Lifecycle, client: Client) -> None:
    life.behave("*", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    stop(client, "f1", "e1")
    whole = history(client, "f1", "e1")
    assert whole.next_token is None and len(whole.events) >= 2
    paged: list[Any] = []
    token = None
    for _ in range(len(whole.events)):
        page = history(client, "f1", "e1", limit=1, next_token=token)
        assert len(page.events) == 1
        paged.extend(page.events)
        token = page.next_token
        if token is None:
            break
    assert [e.to_map() for e in paged] == [e.to_map() for e in whole.events]


def test_history_errors(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=1)
    start(client, "f1", "1", name="e1")
    with cloudflow_error(404, "ExecutionNotExists"):
        history(client, "f1", "nope")
    with cloudflow_error(404, "FlowNotExists"):
        history(client, "f2", "e1")
    with cloudflow_error(400, "MissingRequiredParams") as raised:
        history(client, "f1", "")
    assert "ExecutionName" in raised.message
    for params, field in [
        ({"Limit": "0"}, "Limit"),
        ({"Limit": "1001"}, "Limit"),
        ({"Limit": "x"}, "Limit"),
        ({"NextToken": "abc"}, "NextToken"),
        ({"NextToken": "-1"}, "NextToken"),
    ]:
        query = {"FlowName": "f1", "ExecutionName": "e1", **params}
        answer = raw_call(life.gateway, "GetExecutionHistory", query, "GET")
        assert_raw_error(answer, 400, "InvalidArgument")
        assert field in answer.body["Message"]
    assert _started(life) == 1


def test_list_items_carry_the_flows_environment(life: Lifecycle, client: Client) -> None:
    variables = [models.CreateFlowRequestEnvironmentVariables(name="region", value="eu")]
    client.create_flow(
        models.CreateFlowRequest(
            name="f1",
            definition=DEFINITION,
            description="",
            environment=models.CreateFlowRequestEnvironment(variables=variables),
        )
    )
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    start(client, "f1", "1", name="e1")
    (item,) = list_all(client, "f1")
    assert [(v.name, v.value) for v in item.environment.variables] == [("region", "eu")]
    (lean,) = list_all(client, "f1", metadata_only=True)
    assert lean.environment is None


def test_list_survives_a_deleted_version(life: Lifecycle, client: Client) -> None:
    create_flow(client, "f1", versions=2)
    start(client, "f1", "1", name="on-1")
    start_sync(client, "f1", "2", name="on-2")  # answers no definition: none is cached
    client.delete_flow_version(models.DeleteFlowVersionRequest(flow_name="f1", flow_version="2"))
    items = {e.name: e for e in list_all(client, "f1")}
    assert items["on-1"].flow_definition == DEFINITION
    assert (items["on-2"].status, items["on-2"].flow_definition) == ("Succeeded", "")


def test_list_right_after_start_shows_the_unnamed_execution(
    life: Lifecycle, client: Client
) -> None:
    """Read-your-writes on one gateway: the list flushes this process's journal first,
    so an unnamed execution is listed at once, not a journal window later."""
    life.behave("1", mode="async", duration_ms=None)
    create_flow(client, "f1", versions=1)
    started = [start(client, "f1", "1", '{"n": 1}').body.name for _ in range(3)]
    assert sorted(e.name for e in list_all(client, "f1")) == sorted(started)
