"""Read the Dockerfile's instructions, by stage, so tests can replay them without Docker."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, …
    flags: tuple[str, ...]  # --mount=…, --from=…, --chmod=…
    args: str  # the rest, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON-array form's arguments (``["a", "b"]``), else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):  # comments (and parser directives) inside continuations too
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


_FLAG = re.compile(r"--[a-z-]+=\S+")


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: list[str] = []
        rest = rest.strip()
        while (match := _FLAG.match(rest)) is not None:
            flags.append(match.group())
            rest = rest[match.end() :].strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        if not stages:
            raise ValueError(f"{path}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, tuple(flags), rest))
    return stages


def shell_words(instruction: Instruction) -> list[str]:
    """A shell-form RUN as words (no shell features beyond quoting are expected)."""
    return shlex.split(instruction.args)


def env(stage: Stage) -> dict[str, str]:
    """The stage's ENV settings (``ENV a=b c=d`` form)."""
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            key, sep, value = word.partition("=")
            assert sep, f"use the ENV key=value form: {instruction.args}"
            values[key] = value
    return values


def copies(stage: Stage) -> dict[str, str]:
    """Destination → source of the stage's COPY instructions from the build context."""
    out: dict[str, str] = {}
    for instruction in stage.all("COPY"):
        if any(flag.startswith("--from=") for flag in instruction.flags):
            continue
        words = instruction.exec_form() or shlex.split(instruction.args)
        *sources, destination = words
        for source in sources:
            out[destination if len(sources) == 1 else destination.rstrip("/") + "/" + source] = (
                source
            )
    return out
