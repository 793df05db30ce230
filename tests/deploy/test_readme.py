"""docs/deploy.md: the files it names exist, and its quickstart requests work.

The compose quickstart's curl commands run, as written, against a local
gateway on the memory store in place of the compose stack's load balancer.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator

import pytest

from router.store.memory import MemoryStore
from tests.deploy.conftest import ROOT, run
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor


def _section() -> str:
    return (ROOT / "docs" / "deploy.md").read_text()


SECTION = _section()


def test_named_files_exist() -> None:
    named = set(re.findall(r"(?<![\w/])((?:deploy|tests)/[\w./-]*[\w/])", SECTION))
    named |= {"Dockerfile"}
    assert len(named) > 5
    for path in sorted(named):
        assert (ROOT / path).exists(), f"docs/deploy.md names {path}, which does not exist"


def test_compose_commands_name_the_compose_file() -> None:
    # Commands to run (with options), in code blocks or spans; prose may say "docker compose up".
    commands = [c for c in re.findall(r"docker compose [^\n`]*", SECTION) if " -" in c]
    assert len(commands) >= 3
    for command in commands:
        assert "-f deploy/compose/compose.yaml" in command, command


def _quickstart() -> list[list[str]]:
    """The curl commands of the code block after "Send a canary some traffic"."""
    after = SECTION.split("Send a canary some traffic", 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None
    text = block.group(1).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["curl"]:
            commands.append(words)
    return commands


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    loop = BackgroundLoop()
    executor = RecordingExecutor()
    loop.run(executor.start())
    server = start_gateway(loop, MemoryStore(), executor)
    yield server
    loop.run(server.stop())
    loop.run(executor.stop())
    loop.close()


def test_quickstart_requests_succeed(gateway: GatewayServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    commands = _quickstart()
    assert [c.count("-XPOST") for c in commands] == [1] * len(commands)
    actions = [re.findall(r"Action=(\w+)", " ".join(c))[0] for c in commands]
    assert actions == [
        "CreateFlow",
        "PublishFlowVersion",
        "PublishFlowVersion",
        "CreateFlowAlias",
        "StartExecution",
    ]
    for command in commands:
        words = [w.replace("$gw", gateway.url) for w in command]
        result = run(curl, *words[1:], "-w", "\n%{http_code}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.rsplit("\n", 1)[-1] == "200", (words, result.stdout)
