"""Bedrock wire parsing: request members whose shape only Bedrock has.

The rules both APIs share (names, routes, versions, execution names) and the
Bedrock value constraints (tags, ARNs, client tokens, descriptions) live in
``router/model.py``; this module turns Bedrock's wire structures
(``definition``, ``routingConfiguration``, ``inputs``, ``maxResults``) into what
the model checks.
"""

from __future__ import annotations

import re
from typing import Any

from router.errors import InvalidArgument, MissingParameter
from router.model import DRAFT

_NODE_NAME_PATTERN = re.compile(r"[a-zA-Z](?:_?[0-9a-zA-Z]){0,99}")
MAX_RESULTS = 1000


def validate_bedrock_definition(definition: Any, field_name: str = "definition") -> Any:
    """Optional; a Bedrock flow definition is a JSON structure (``{nodes, connections}``)."""
    if definition is not None and not isinstance(definition, dict):
        raise InvalidArgument(f"{field_name} must be a structure", field_name)
    return definition


def bedrock_route_entries(
    raw: Any, field_name: str = "routingConfiguration"
) -> list[tuple[Any, int]]:
    """``[{flowVersion}]`` as ``(version, weight 1)`` pairs for :func:`validate_routes`.

    Bedrock has no weights: an alias names exactly one version, which the
    caller's ``validate_routes`` with a maximum of 1 enforces. ``DRAFT`` is
    the working copy, reached through the test alias, never routed to.
    """
    if raw is None:
        raise MissingParameter(field_name)
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise InvalidArgument(f"{field_name} must be a list of {{flowVersion}}", field_name)
    entries: list[tuple[Any, int]] = []
    for entry in raw:
        version = entry.get("flowVersion")
        if version is None:
            raise MissingParameter(f"{field_name}.flowVersion")
        if version == DRAFT:
            raise InvalidArgument(
                f"{field_name}: an alias routes to a published version, not {DRAFT}", field_name
            )
        entries.append((version, 1))
    return entries


def validate_max_results(value: str | None, field_name: str = "maxResults") -> int | None:
    if value is None or value == "":
        return None
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > len(str(MAX_RESULTS))  # int() refuses 4300+ digits: never get there
        or not 1 <= int(value) <= MAX_RESULTS
    ):
        raise InvalidArgument(f"{field_name} must be between 1 and {MAX_RESULTS}", field_name)
    return int(value)


def validate_flow_inputs(inputs: Any, field_name: str = "inputs") -> Any:
    """Exactly one ``{nodeName, content: {document}}``; returns the document."""
    if inputs is None:
        raise MissingParameter(field_name)
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidArgument(f"{field_name} must be a list of exactly one input", field_name)
    item = inputs[0]
    node = item.get("nodeName")
    if node is None:
        raise MissingParameter(f"{field_name}.nodeName")
    if not isinstance(node, str) or not _NODE_NAME_PATTERN.fullmatch(node):
        raise InvalidArgument(
            f"{field_name}.nodeName {node!r} does not match {_NODE_NAME_PATTERN.pattern}",
            f"{field_name}.nodeName",
        )
    content = item.get("content")
    if not isinstance(content, dict) or "document" not in content:
        raise InvalidArgument(
            f"{field_name}.content must be {{document: ...}}", f"{field_name}.content"
        )
    return content["document"]
