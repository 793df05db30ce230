"""What both dialects share: header names, request ids, times, error lookup, Retry-After."""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar

from router.errors import RouterError, Throttled

V = TypeVar("V")

# flow-router extensions, the same on both APIs.
ROUTING_KEY_HEADER = "X-Routing-Key"  # a sticky key: the same key, the same version
FLOW_VERSION_HEADER = "X-Flow-Version"  # the version an execution ran on


def request_id() -> str:
    return str(uuid.uuid4()).upper()


def iso8601(ms: int) -> str:
    """``2020-01-01T01:01:01.001Z``: the form both APIs document."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    # Executions started in the same second share this prefix; strftime is slow.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def lookup_error(table: Mapping[type[RouterError], V], error: RouterError) -> V:
    """The entry for the most specific class of ``error`` in a dialect's table."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    raise LookupError(f"no mapping for {type(error).__name__}")


def retry_after(error: Throttled) -> str:
    """Whole seconds until a throttled caller may retry: rounded up, at least 1."""
    return str(max(1, math.ceil(error.retry_after_s)))
