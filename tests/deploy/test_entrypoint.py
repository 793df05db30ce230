"""deploy/docker/entrypoint.sh: --workers from the CPU limit, read from fake cgroup files.

The script takes the cgroup root from FLOW_ROUTER_CGROUP_ROOT, so each test lays
out a cgroup v2 (``cpu.max``) or v1 (``cpu/cpu.cfs_quota_us``) tree in a temporary
directory and runs the script with a command that prints what it was given.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ENTRYPOINT

# What the entrypoint exports, printed by the command it execs.
SHOW = ["sh", "-c", 'printf "%s" "${FLOW_ROUTER_WORKERS-unset}"', "show"]
SHARED = {"FLOW_ROUTER_STORE": "redis://redis:6379/0", "FLOW_ROUTER_UPSTREAM": "http://e:9090/"}
CORES = len(os.sched_getaffinity(0))  # what nproc reports to the script


def entrypoint(
    cgroup: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], "FLOW_ROUTER_CGROUP_ROOT": str(cgroup), **(env or {})}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *SHOW, *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )


def workers(cgroup: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> str:
    return entrypoint(cgroup, env, args).stdout


def v2(root: Path, cpu_max: str) -> Path:
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def v1(root: Path, quota: int, period: int, controller: str = "cpu") -> Path:
    directory = root / controller
    directory.mkdir()
    (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (directory / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [
        ("100000 100000", 1),
        ("50000 100000", 1),  # half a CPU still needs a process
        ("150000 100000", 1),  # rounded down: a second worker would be throttled
        ("200000 100000", 2),
        ("400000 200000", 2),
        ("6400000 100000", 64),
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, limit: int) -> None:
    assert workers(v2(tmp_path, cpu_max), SHARED) == str(min(limit, CORES))


def test_cgroup_v2_without_limit_uses_every_core(tmp_path: Path) -> None:
    assert workers(v2(tmp_path, "max 100000"), SHARED) == str(CORES)


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(tmp_path: Path, controller: str) -> None:
    root = v1(tmp_path, 100000, 100000, controller)
    assert workers(root, SHARED) == "1"


def test_cgroup_v1_unlimited_quota_uses_every_core(tmp_path: Path) -> None:
    assert workers(v1(tmp_path, -1, 100000), SHARED) == str(CORES)


def test_no_cgroup_files_uses_every_core(tmp_path: Path) -> None:
    assert workers(tmp_path / "missing", SHARED) == str(CORES)


@pytest.mark.parametrize("garbage", ["", "max", "abc 100000", "100000 0", "-5 100000"])
def test_unreadable_cpu_max_falls_back_to_the_cores(tmp_path: Path, garbage: str) -> None:
    assert workers(v2(tmp_path, garbage), SHARED) == str(CORES)


def test_a_limit_above_the_cores_is_capped_by_them(tmp_path: Path) -> None:
    # A quota of 1000 CPUs on this machine: as many workers as cores, not 1000.
    assert workers(v2(tmp_path, "100000000 100000"), SHARED) == str(CORES)


def test_memory_store_gets_one_worker(tmp_path: Path) -> None:
    root = v2(tmp_path, "max 100000")
    assert workers(root) == "1"  # no FLOW_ROUTER_STORE: flow-router's default, memory://
    assert workers(root, {"FLOW_ROUTER_STORE": "memory://"}) == "1"


def test_without_upstream_one_worker(tmp_path: Path) -> None:
    # The built-in executor lives in one process: flow-router refuses more.
    root = v2(tmp_path, "max 100000")
    assert workers(root, {"FLOW_ROUTER_STORE": "redis://redis:6379/0"}) == "1"


def test_store_and_upstream_flags_count_like_the_environment(tmp_path: Path) -> None:
    root = v2(tmp_path, "max 100000")
    assert workers(root, args=("--store", "redis://r/0", "--upstream", "http://e/")) == str(CORES)
    assert workers(root, args=("--store=redis://r/0", "--upstream=http://e/")) == str(CORES)
    # A flag wins over the environment, as in flow-router.
    assert workers(root, SHARED, args=("--store", "memory://")) == "1"


@pytest.mark.parametrize("given", ["3", "1"])
def test_explicit_workers_are_kept(tmp_path: Path, given: str) -> None:
    root = v2(tmp_path, "100000 100000")
    assert workers(root, {**SHARED, "FLOW_ROUTER_WORKERS": given}) == given


@pytest.mark.parametrize("auto", ["0", "auto", ""])
def test_auto_workers_are_sized(tmp_path: Path, auto: str) -> None:
    root = v2(tmp_path, "100000 100000")
    assert workers(root, {**SHARED, "FLOW_ROUTER_WORKERS": auto}) == "1"


def test_workers_flag_is_left_to_flow_router(tmp_path: Path) -> None:
    root = v2(tmp_path, "100000 100000")
    result = entrypoint(root, SHARED, args=("--workers", "4"))
    assert result.stdout == "unset"
    assert "FLOW_ROUTER_WORKERS" not in result.stderr


def test_says_what_it_chose(tmp_path: Path) -> None:
    result = entrypoint(v2(tmp_path, "100000 100000"), SHARED)
    assert result.stderr == "flow-router-entrypoint: FLOW_ROUTER_WORKERS=1\n"


def test_execs_the_command_so_signals_reach_it(tmp_path: Path) -> None:
    """The command replaces the script's shell (same PID): SIGTERM goes straight to it."""
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", "echo $$"],
        env={"PATH": os.environ["PATH"], "FLOW_ROUTER_CGROUP_ROOT": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out, _ = process.communicate(timeout=10)
    assert out.strip() == str(process.pid)


def test_passes_arguments_through_unchanged(tmp_path: Path) -> None:
    args = ("--log-level", "DEBUG", "with space", "", "*")
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "python3", "-c", "import sys; print(sys.argv[1:])", *args],
        env={"PATH": os.environ["PATH"], "FLOW_ROUTER_CGROUP_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert result.stdout.strip() == repr(list(args))
