"""CloudFlow wire values: the per-request ``Call`` and the answer bodies.

Parameters arrive as strings (query and form merged); JSON-valued ones
(``Input``, ``RoutingConfigurations``, ``Environment``) are parsed and
depth-checked here. Bodies are shaped exactly as the SDK's models read them
(docs/wire.md §2.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router import errors, model
from router.dialects.common import iso8601
from router.lifecycle.status import dialect_name
from router.model import Alias, Api, Flow, FlowVersion, Route
from router.service import Execution, Gateway, PageFields

API = Api.CLOUDFLOW
DEFAULT_LIMIT = 100
PAGE_FIELDS = PageFields(limit="Limit", token="NextToken")
# flow-router extension: the alias routes an execution by its ExecutionName (sticky).
STICKY = "StickyExecutionName"


@dataclass
class Call:
    """One request: its parameters, the gateway, and headers to add to the answer."""

    params: Mapping[str, str]
    gateway: Gateway
    routing_key: bytes | None = None  # X-Routing-Key: sticky version choice
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value != "" else None

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise errors.MissingParameter(name)
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise errors.InvalidArgument(f"{name} must be an integer", name) from None

    def flag(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise errors.InvalidArgument(f"{name} must be true or false", name)
        return value.lower() == "true"

    def json(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            return None
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise errors.InvalidArgument(f"{name} must be valid JSON", name) from None
        return model.validate_json_depth(document, name, raw=value)

    def page(self) -> tuple[int, str | None, PageFields]:
        return self.integer("Limit", DEFAULT_LIMIT), self.get("NextToken"), PAGE_FIELDS

    async def flow(self, name: str = "FlowName") -> Flow:
        return await self.gateway.flow(self.required(name), name)


# -- bodies ----------------------------------------------------------------------


def _text(value: Any) -> str:
    """Definitions and outputs are strings on this API; JSON documents are dumped."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def flow_body(flow: Flow, definition: Any = None) -> dict[str, Any]:
    body = {
        "Name": flow.name,
        "Id": flow.id,
        "Definition": _text(definition if definition is not None else flow.definition),
        "Description": flow.description,
        "Type": flow.type,
        "RoleArn": flow.role_arn,
        "ExecutionMode": flow.execution_mode,
        "CreatedTime": iso8601(flow.created_at),
        "LastModifiedTime": iso8601(flow.updated_at),
        "ResourceGroupId": "",
    }
    if flow.environment is not None:
        body["Environment"] = flow.environment
    return body


def version_body(version: FlowVersion) -> dict[str, Any]:
    return {
        "Version": str(version.version),
        "Description": version.description,
        "CreatedTime": iso8601(version.created_at),
    }


def alias_body(alias: Alias) -> dict[str, Any]:
    return {
        "Name": alias.name,
        "Description": alias.description,
        "RoutingConfigurations": [
            {"Version": str(r.version), "Weight": r.weight} for r in alias.routes
        ],
        "CreatedTime": iso8601(alias.created_at),
        "LastModifiedTime": iso8601(alias.updated_at),
        STICKY: alias.sticky_execution_name,
    }


def execution_body(execution: Execution, definition: Any) -> dict[str, Any]:
    return {
        "Name": execution.name,
        "FlowName": execution.flow.name,
        "Status": dialect_name(execution.status, "cloudflow"),
        "StartedTime": iso8601(execution.started_at),
        "StoppedTime": iso8601(execution.stopped_at) if execution.stopped_at else "",
        "Input": _text(execution.input),
        "Output": _text(execution.output),
        "FlowDefinition": _text(definition),
    }


def parse_routes(call: Call, name: str = "RoutingConfigurations") -> tuple[Route, ...]:
    raw = call.json(name)
    if raw is None:
        raise errors.MissingParameter(name)
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise errors.InvalidArgument(f"{name} must be a JSON array of {{Version, Weight}}", name)
    for entry in raw:
        for key in ("Version", "Weight"):
            if key not in entry:
                raise errors.InvalidArgument(f"every entry of {name} needs {key}", name)
    return call.gateway.routes(API, [(e["Version"], e["Weight"]) for e in raw], name)
