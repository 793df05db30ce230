"""The rollout status as text for a person: ``flow-router rollout status [--watch]``.

Pure: a status JSON (router/rollout/controller) in, lines out. Tolerant of a
field that is missing or of another type (a gateway of another version), so a
view never fails where the JSON would have been readable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

FINISHED = frozenset({"Succeeded", "RolledBack", "Aborted"})
BAR_WIDTH = 30
HISTORY_LINES = 5
MAX_UNKNOWN_STEPS = 20
_STEP_OF = re.compile(r"\bstep \d+/(\d+)\b")  # "step 2/3": the number of steps, as a hint


def finished(status: Mapping[str, Any]) -> bool:
    return status.get("phase") in FINISHED


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def step_weights(status: Mapping[str, Any]) -> list[int | None]:
    """The canary weights of the steps, then 100; ``None`` for a step not reached yet
    whose weight the status does not say.

    The status's ``stepWeights`` when it has them; else every weight the history and
    the current step show, plus as many unknown steps as the messages' ``step i/n``
    (the gateway's wording, used only as a hint) say are still to come.
    """
    given = status.get("stepWeights")
    if isinstance(given, list) and given and all(_int(w, -1) > 0 for w in given):
        steps: list[int | None] = sorted({*given, 100})
        return steps
    history = status.get("history")
    events = [e for e in history if isinstance(e, Mapping)] if isinstance(history, list) else []
    seen = {_int(e.get("canaryWeight")) for e in events} | {_int(status.get("canaryWeight"))}
    known = sorted(w for w in seen if 0 < w < 100)
    texts = [status.get("message"), *(e.get("message") for e in events)]
    totals = [int(n) for t in texts if isinstance(t, str) for n in _STEP_OF.findall(t)]
    unknown = max(totals, default=0) - len(known)
    return [*known, *([None] * max(0, min(unknown, MAX_UNKNOWN_STEPS))), 100]


def steps_bar(status: Mapping[str, Any]) -> str:
    """``[5% ✓][25% ▶][50%  ][100%  ]``: done, current (✗ where a rollback left it)."""
    phase = status.get("phase")
    weight = _int(status.get("canaryWeight"))
    reached = weight
    if phase in ("RolledBack", "Aborted"):  # weight is 0 now: where did it get to?
        history = status.get("history")
        events = [e for e in history if isinstance(e, Mapping)] if isinstance(history, list) else []
        reached = max((_int(e.get("canaryWeight")) for e in events), default=0)
    cells = []
    for w in step_weights(status):
        if w is None:
            cells.append("[?% ]")
            continue
        if phase == "Succeeded" or w < reached:
            mark = "✓"
        elif w == reached:
            mark = "✗" if phase in ("RolledBack", "Aborted") else "▶"
        else:
            mark = " "
        cells.append(f"[{w}% {mark}]")
    return "".join(cells)


def weight_bar(weight: int, width: int = BAR_WIDTH) -> str:
    filled = round(max(0, min(100, weight)) * width / 100)
    return "[" + "█" * filled + "░" * (width - filled) + "]"


def routes(status: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(version, percent) the alias routes now: the target gets ``canaryWeight`` and
    the baseline versions share the rest in their ratio."""
    target = str(status.get("targetVersion", "?"))
    canary = _int(status.get("canaryWeight"))
    baseline = status.get("baseline")
    entries = [b for b in baseline if isinstance(b, Mapping)] if isinstance(baseline, list) else []
    total = sum(_int(b.get("weight")) for b in entries)
    shares = [(target, float(canary))] if canary else []
    for b in entries:
        version = str(b.get("version", "?"))
        if version != target and total > 0:
            shares.append((version, (100 - canary) * _int(b.get("weight")) / total))
    return shares


def render(status: Mapping[str, Any]) -> str:
    flow, alias = status.get("flow", "?"), status.get("alias", "?")
    target = str(status.get("targetVersion", "?"))
    weight = _int(status.get("canaryWeight"))
    lines = [
        f"{flow}/{alias} → version {target}    {status.get('phase', '?')}    "
        f"step {_number(status.get('step'))}",
        f"steps     {steps_bar(status)}",
        f"canary    {weight_bar(weight)} {weight}%",
        "routes    " + ", ".join(f"{v}: {share:g}%" for v, share in routes(status)),
        "counts    (this step)  executions  failed  slow",
    ]
    counts = status.get("counts")
    for version, c in sorted(counts.items()) if isinstance(counts, Mapping) else ():
        c = c if isinstance(c, Mapping) else {}
        name = f"{version} (canary)" if version == target else str(version)
        lines.append(
            f"          {name:<12}{_number(c.get('executions')):>12}"
            f"{_number(c.get('failed')):>8}{_number(c.get('slow')):>6}"
        )
    lines += [
        f"evidence  {_number(status.get('evidence'))}",
        f"message   {status.get('message', '')}",
        f"started   {status.get('startedAt', '-')}    updated {status.get('updatedAt', '-')}",
    ]
    history = status.get("history")
    events: Sequence[Any] = history if isinstance(history, list) else []
    if events:
        lines.append("history")
        for e in events[-HISTORY_LINES:]:
            e = e if isinstance(e, Mapping) else {}
            lines.append(
                f"  {e.get('at', '?')}  {e.get('phase', '?'):<16} "
                f"{_int(e.get('canaryWeight')):>3}%  {e.get('message', '')}"
            )
    return "\n".join(lines)
