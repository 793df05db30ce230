"""JSON documents from callers (inputs, definitions): checked once, before anything is
stored or forwarded.

Two things orjson parses but the gateway must not pass on silently:

* nesting deeper than :data:`MAX_DEPTH`: a document the gateway accepted must also
  be one it can answer with and forward (orjson encodes at most 254 levels);
* integers outside the 64-bit range: orjson reads them as floats, so
  ``18446744073709551616`` would reach the executor as ``1.8446744073709552e19``.
  Such a document is refused with a 400 naming the field (send the number as a
  string), rather than changed on its way through.

The walk is iterative, so a hostile document cannot exhaust the stack; the exact
integer check re-reads the text with the standard library only when the walk saw a
float that an out-of-range integer could have become, so ordinary documents cost
nothing more.
"""

from __future__ import annotations

import json
from typing import Any

from router.errors import InvalidArgument

MAX_DEPTH = 64
_INT_MIN = -(2**63)  # orjson reads integers in [-2**63, 2**64 - 1] exactly
_INT_MAX = 2**64 - 1
_SUSPECT = float(2**63)  # the smallest magnitude an out-of-range integer becomes


def validate(
    document: Any, field_name: str, limit: int = MAX_DEPTH, raw: str | bytes | None = None
) -> Any:
    """``document`` unchanged, or InvalidArgument naming ``field_name``.

    ``raw`` is the text ``document`` was parsed from; without it only the depth
    is checked.
    """
    suspect = False
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, float) and abs(value) >= _SUSPECT and value.is_integer():
                suspect = True
            continue
        if depth > limit:
            raise InvalidArgument(f"{field_name} is nested deeper than {limit} levels", field_name)
        stack.extend((child, depth + 1) for child in children)
    if suspect and raw is not None:
        _check_integers(raw, field_name)
    return document


def _check_integers(raw: str | bytes, field_name: str) -> None:
    def exact(text: str) -> int:
        number = int(text)
        if not _INT_MIN <= number <= _INT_MAX:
            raise InvalidArgument(
                f"{field_name} holds the integer {text[:40]}{'…' if len(text) > 40 else ''}, "
                "outside the 64-bit range the gateway passes on exactly; send it as a string",
                field_name,
            )
        return number

    json.loads(raw, parse_int=exact)
