"""A bench run's results go to a new git-ignored directory unless ``--out`` names one,
so a trial run never overwrites the committed ``bench/results/``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench import _util

ROOT = Path(__file__).resolve().parent.parent


def test_each_run_gets_a_new_directory(tmp_path: Path) -> None:
    first = _util.fresh_out_dir(tmp_path)
    second = _util.fresh_out_dir(tmp_path)
    assert first != second
    assert first.is_dir() and second.is_dir()
    assert list(first.iterdir()) == []


def test_default_is_under_bench_out_and_ignored_by_git() -> None:
    made = _util.out_dir(None)
    try:
        assert made.parent == ROOT / "bench" / "out"
        assert made != _util.RESULTS_DIR
        if shutil.which("git") is None or not (ROOT / ".git").exists():
            pytest.skip("not a git checkout")
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(made / "sampler.json")], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"{made} is not ignored by git"
    finally:
        shutil.rmtree(made)
        if not any(made.parent.iterdir()):
            made.parent.rmdir()


def test_out_names_the_directory(tmp_path: Path) -> None:
    wanted = tmp_path / "results"
    assert _util.out_dir(wanted) == wanted
    assert wanted.is_dir()
