"""Small helpers shared by the benches: progress on stderr, machine facts, result files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"  # the committed results; written only with --out bench/results
OUT_ROOT = BENCH_DIR / "out"  # a trial run's results, one directory per run (git-ignored)
# CPU (cores) taken by processes the bench did not start above which a load run is suspect.
NOISY_CORES = 0.25


def other_cores(run: dict[str, Any]) -> float:
    return float(run.get("cpu_cores", {}).get("other", 0.0)) if "cpu_cores" in run else 1e9


def retry_note(progress: Progress, label: str) -> Callable[[int], None]:
    def note(attempt: int) -> None:
        progress.show(f"{label}: other processes took CPU, attempt {attempt}", force=True)

    return note


def quietest(
    attempt: Callable[[], dict[str, Any]], retries: int, on_retry: Callable[[int], None]
) -> dict[str, Any]:
    """Run ``attempt`` and repeat it (at most ``retries`` more times) while other processes
    took more than NOISY_CORES during it; keep the quietest attempt, note the others."""
    attempts = [attempt()]
    while other_cores(attempts[-1]) > NOISY_CORES and len(attempts) <= retries:
        on_retry(len(attempts) + 1)
        attempts.append(attempt())
    best = min(attempts, key=other_cores)
    best["attempts"] = len(attempts)
    if len(attempts) > 1:
        best["discarded_other_cores"] = [other_cores(a) for a in attempts if a is not best]
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, s = divmod(seconds, 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line per step otherwise."""

    def __init__(self, name: str, planned_s: float = 0.0) -> None:
        self.name = name
        self.start = time.monotonic()
        self.planned_s = planned_s
        self.done_s = 0.0  # planned seconds of work already finished
        self._tty = sys.stderr.isatty()
        self._width = 0
        self._last_line = 0.0  # when not on a terminal, print at most one line per interval
        self.interval_s = 2.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def advance(self, planned_s: float) -> None:
        self.done_s += planned_s

    def show(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self._tty and not force and now - self._last_line < self.interval_s:
            return
        self._last_line = now
        parts = [f"[{self.name}] {message}", f"elapsed {fmt_duration(self.elapsed())}"]
        if self.planned_s:
            parts.append(f"remaining ~{fmt_duration(self.planned_s - self.done_s)}")
        line = " · ".join(parts)
        if self._tty:
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def note(self, message: str) -> None:
        """A line that stays (setup steps, warnings)."""
        self.end_line()
        sys.stderr.write(f"[{self.name}] {message}\n")
        sys.stderr.flush()

    def end_line(self) -> None:
        if self._tty and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0


def _run_text(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout + done.stderr).strip()


def cpu_model() -> str:
    for line in _run_text(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> dict[str, Any]:
    """The commit under test, whether router/ differs from it (read-only git calls), and a
    digest of router/'s Python files, which names the exact code even when it is uncommitted."""
    commit = _run_text(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"])
    dirty = _run_text(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "router"])
    digest = hashlib.sha1()
    for path in sorted((REPO_DIR / "router").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes())
    return {
        "commit": commit or None,
        "router_dirty": bool(dirty),
        "router_sha1": digest.hexdigest(),
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def fresh_out_dir(root: Path = OUT_ROOT) -> Path:
    """A new, empty ``<root>/<UTC time>`` directory for one run's results.

    Runs write here unless given ``--out``, so a trial run never overwrites the
    committed ``bench/results/`` and leaves the git tree clean (``bench/out/`` is
    ignored).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(100):
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"no free results directory under {root} for {stamp}")


def out_dir(given: Path | None) -> Path:
    """``--out`` if given (created if missing), else a fresh directory under bench/out/."""
    if given is None:
        return fresh_out_dir()
    given.mkdir(parents=True, exist_ok=True)
    return given
