"""The names of executions nobody named.

An execution started without a name gets ``<hex>.<version>.<alias>``: callers
cannot choose that form (their names may not contain dots), and it carries what
describing the execution later needs, so unnamed executions cost no store I/O.
"""

from __future__ import annotations

import uuid

from router.store.base import ExecutionRecord


def generated(version: str, alias: str) -> str:
    return f"{uuid.uuid4().hex}.{version}.{alias}"


def is_generated(name: str) -> bool:
    return "." in name


def parse_generated(flow_id: str, name: str) -> ExecutionRecord | None:
    """The record a generated name stands for, or ``None`` for a caller's name."""
    parts = name.split(".")
    if len(parts) != 3 or len(parts[0]) != 32 or not parts[1]:
        return None
    return ExecutionRecord(flow_id, name, parts[1], parts[2], 0)
