"""The names of executions nobody named.

An execution started without a name gets ``<hex>.<version>.<alias>``: callers
cannot choose that form (their names may not contain dots), and it carries what
describing the execution later needs, so unnamed executions cost no store I/O.
"""

from __future__ import annotations

import re
import uuid

from router.store.base import ExecutionRecord


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
    """The record a generated name stands for, or ``None`` for any other name."""
    match = _GENERATED.fullmatch(name)
    if match is None:
        return None
    return ExecutionRecord(flow_id, name, match[2], match[3], 0)
