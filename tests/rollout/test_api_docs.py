"""docs/rollout-api.md's tables mirror the code: the endpoints, the error table, the
CLI's options; a change to one without the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

from router.cli import _parser
from router.rollout.api import OPERATIONS
from router.rollout.api_errors import ERRORS

DOC = Path(__file__).resolve().parents[2] / "docs" / "rollout-api.md"


def table(first_header: str) -> list[list[str]]:
    """The rows of the Markdown table whose first column is headed ``first_header``."""
    rows: list[list[str]] = []
    inside = False
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else []
        if not inside:
            inside = bool(cells) and cells[0] == first_header
            continue
        if not cells:
            break
        if not set(cells[0]) <= set("-: "):
            rows.append(cells)
    assert rows, f"no table headed {first_header!r}"
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_endpoint_table_is_the_route_table() -> None:
    documented = set()
    for method, route, operation, _ in table("Method"):
        (path,) = ticked(route)
        rest = path.partition("/aliases/{alias}/")[2]
        documented.add((ticked(method)[0], rest, operation))
    routed = {(m, rest, op.name) for rest, ops in OPERATIONS.items() for m, op in ops.items()}
    assert documented == routed


def test_the_error_table_is_the_error_mapping() -> None:
    documented = {(int(status), ticked(code)[0]) for status, code, _ in table("Status")}
    assert documented == set(ERRORS.values())


def test_the_cli_options_table_is_the_parser() -> None:
    documented = {ticked(cells[0])[0].split()[0] for cells in table("Option")}
    status = _parser()._subparsers._group_actions[0].choices["rollout"]  # type: ignore[union-attr]
    action = status._subparsers._group_actions[0].choices["status"]
    options = {o for a in action._actions for o in a.option_strings if o.startswith("--")} - {
        "--help",
        "--watch",
        "--interval",
    }  # those two are described under status
    assert documented == options
