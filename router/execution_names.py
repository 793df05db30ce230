"""The names of executions nobody named.

An execution started without a name gets ``<hex>.<version>.<alias>``: callers
cannot choose that form (their names may not contain dots), and it carries
what describing the execution needs even when its record is missing (the
journal's flush window lost in a crash, or a name from a v1 gateway).
"""

from __future__ import annotations

import re
import uuid

from router.lifecycle.record import ExecutionRecord


def generated(version: str, alias: str) -> str:
    return f"{uuid.uuid4().hex}.{version}.{alias}"


def is_generated(name: str) -> bool:
    return "." in name


# What ``generated`` makes, and nothing else: the parts become the X-Flow-Version
# header and the executor URL, so a forged name with other characters (CR/LF, a
# path) must not decode. Versions are published numbers or DRAFT; alias names of
# both APIs are made of these characters (or empty: no alias).
_GENERATED = re.compile(r"([0-9a-f]{32})\.([1-9][0-9]{0,4}|DRAFT)\.([A-Za-z0-9_-]{0,128})")


def parse_generated(flow_id: str, name: str) -> ExecutionRecord | None:
    """The (Running, unstored) record a generated name stands for, or ``None`` for
    any other name; its start time is unknown (0)."""
    match = _GENERATED.fullmatch(name)
    if match is None:
        return None
    return ExecutionRecord(flow_id, "", name, match[2], match[3], 0, generated=True)
