"""router/executor.py's protocol-v2 modes (``flow-router executor --mode async
--duration-ms N --fail VERSION=RATIO``) behind a real gateway, with and without
callbacks, and the options as the command line parses them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from router import cli
from router.cli_lifecycle import executor_behaviour
from router.config import Config
from router.executor import Behaviour, make_executor_app
from router.lifecycle.status import Status
from router.store.memory import MemoryStore
from tests.dialects import cloudflow_client as cf
from tests.harness import BackgroundLoop, GatewayServer, free_port
from tests.lifecycle_rig import Rig


@pytest.fixture(params=[False, True], ids=["polling", "callbacks"])
def reference(request: pytest.FixtureRequest, bg_loop: BackgroundLoop) -> Iterator[Rig]:
    behaviour = Behaviour(mode="async", duration_ms=100, failures={"2": 1.0}, seed=3)
    runner = web.AppRunner(make_executor_app(behaviour=behaviour))
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    bg_loop.run(start())
    gateway_port = free_port()
    config = Config(
        port=gateway_port,
        upstream=f"http://127.0.0.1:{port}/flows/{{flow}}/versions/{{version}}/executions",
        callback_url=f"http://127.0.0.1:{gateway_port}" if request.param else None,
    )
    store = MemoryStore()
    server = GatewayServer(config, store=store)
    bg_loop.run(server.start())
    yield Rig(bg_loop, None, server, store)  # type: ignore[arg-type]
    bg_loop.run(server.stop())
    bg_loop.run(runner.cleanup())


def test_async_runs_end_after_their_duration_and_fail_as_injected(reference: Rig) -> None:
    client = cf.client_for(reference.server)
    cf.create_flow(client, "f1", versions=2)
    started = {version: cf.start(client, "f1", version, '{"k": 1}').body for version in ("1", "2")}
    assert {b.status for b in started.values()} == {"Running"}
    ended = {v: reference.wait_final("f1", b.name) for v, b in started.items()}
    assert ended["1"].status is Status.SUCCEEDED and ended["1"].output == {"k": 1}
    assert ended["2"].status is Status.FAILED and ended["2"].error == "Injected.Failure"
    assert reference.finals("f1") == {("1", "Succeeded"): 1, ("2", "Failed"): 1}


def test_a_running_reference_execution_can_be_stopped(reference: Rig) -> None:
    client = cf.client_for(reference.server)
    cf.create_flow(client, "f1", versions=1)
    cf.start(client, "f1", "1", "{}", name="halt-me")

    async def stop() -> Status:
        flow = await reference.gateway.flow("f1")
        return (await reference.gateway.stop_execution(flow, "halt-me", "Halt", "test")).status

    assert reference.run(stop()) is Status.ABORTED
    assert reference.wait_final("f1", "halt-me").status is Status.ABORTED


def test_executor_options_parse() -> None:
    args = cli._parser().parse_args(
        ["executor", "--mode", "async", "--duration-ms", "250", "--fail", "2=0.5", "--seed", "9"]
    )
    assert executor_behaviour(args) == Behaviour("async", 250, {"2": 0.5}, 9)
    for bad in (["--fail", "2"], ["--fail", "2=1.5"], ["--duration-ms", "-1"]):
        with pytest.raises(SystemExit):
            cli._parser().parse_args(["executor", *bad])
