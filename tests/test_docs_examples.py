"""The README's worked example runs as pasted, block after block, on one gateway.

One ``flow-router serve`` process as the quickstart starts it (memory store,
built-in executor), on a free port. The ``sh`` blocks of "A worked example" run
with bash, ``gw=`` pointed at that gateway; every curl must answer 2xx, and
what the comments claim must hold: ``# version N`` after a PublishFlowVersion,
``# X-Flow-Version: …`` after an execution (the version is one of the numbers
the comment names). Then the ``python`` blocks run, in order, with the
endpoint replaced, and each line they print with ``version N`` must show a
version that the comment on its ``print`` names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import GatewayProcess, Processes

ROOT = Path(__file__).resolve().parent.parent
README_ENDPOINT = "127.0.0.1:8080"
RUN_TIMEOUT_S = 120


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## A worked example\n(.*?)^## ", readme, re.M | re.S)
    assert match is not None, "README has no 'A worked example' section followed by another"
    return match.group(1)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", _section(), re.M | re.S)


@dataclass
class Command:
    text: str  # continuation lines joined
    comments: list[str]  # its trailing comment, then the comment lines after it


def _commands(block: str) -> list[Command]:
    """The curl commands of a shell block, each with the comments that describe it."""
    commands: list[Command] = []
    for line in block.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if commands:
                commands[-1].comments.append(stripped.lstrip("# "))
        elif stripped.startswith("curl "):
            code, _, comment = stripped.partition("  #")
            commands.append(Command(code, [comment.strip()] if comment else []))
    return commands


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with Processes(tmp_path_factory.mktemp("readme-gateway")) as processes:
        yield processes.start()  # no flags: the quickstart's `flow-router serve`


# The shell wrapper: curl fails on non-2xx, and each call's output is kept in order.
_PRELUDE = """set -euo pipefail
curl() {
  local n
  n=$(( $(cat "$OUT/count") + 1 )); echo "$n" > "$OUT/count"
  command curl --fail-with-body "$@" > "$OUT/$n"
  cat "$OUT/$n"
}
"""


def _check_claims(command: Command, output: str) -> None:
    for claim in command.comments:
        if match := re.fullmatch(r"version (\d+)", claim):
            assert json.loads(output)["Version"] == match.group(1), (command.text, output)
        elif claim.startswith("X-Flow-Version:"):
            allowed = set(re.findall(r"\d+", claim))
            found = re.search(r"^X-Flow-Version: (\S+)\r?$", output, re.M | re.I)
            assert found is not None, (command.text, output)
            assert found.group(1) in allowed, (command.text, claim, output)
        elif claim.startswith("HTTP/1.1 "):
            assert output.startswith(claim), (command.text, output)


def test_readme_has_a_block_per_dialect() -> None:
    assert len(_blocks("sh")) >= 2
    python = _blocks("python")
    assert any("alibabacloud_fnf20190315" in b for b in python)
    assert any("boto3" in b for b in python)


def test_shell_then_python_examples_run_as_pasted(gateway: GatewayProcess, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    blocks = _blocks("sh")
    script = "\n".join(blocks)
    assert script.startswith(f"gw=http://{README_ENDPOINT}\n")
    script = script.replace(f"gw=http://{README_ENDPOINT}", f"gw={gateway.url}", 1)
    (tmp_path / "count").write_text("0")
    done = subprocess.run(
        ["bash", "-c", _PRELUDE + script],
        env={"OUT": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    commands = [c for block in blocks for c in _commands(block)]
    assert int((tmp_path / "count").read_text()) == len(commands)
    claims = 0
    for n, command in enumerate(commands, 1):
        _check_claims(command, (tmp_path / str(n)).read_text())
        claims += len(command.comments)
    assert claims >= 6

    _run_python_blocks(gateway, tmp_path)


def _run_python_blocks(gateway: GatewayProcess, tmp_path: Path) -> None:
    endpoint = gateway.url.removeprefix("http://")
    for i, block in enumerate(_blocks("python")):
        assert README_ENDPOINT in block
        path = tmp_path / f"example_{i}.py"
        path.write_text(block.replace(README_ENDPOINT, endpoint))
        done = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        assert done.returncode == 0, block + done.stdout + done.stderr
        claims = [
            set(re.findall(r"\d+", line.split("#", 1)[1].split("{", 1)[0]))
            for line in block.splitlines()
            if line.lstrip().startswith("print(") and re.search(r"#.*\bversion \d", line)
        ]
        shown = re.findall(r"\bversion (\d+)", done.stdout)
        assert len(shown) == len(claims) > 0, (block, done.stdout)
        for version, allowed in zip(shown, claims, strict=True):
            assert version in allowed, (block, done.stdout)
        if "list_flows" in block:  # after every earlier example, on the same gateway
            assert "['greeter', 'invoices', 'orders']" in done.stdout, done.stdout
