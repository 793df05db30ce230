"""Bedrock wire values: ARNs and identifiers, the per-request ``Call``, body shapes.

Identifiers (docs/wire.md §3.1): a flow is named by its 10-character id or its ARN,
an alias by its id, ``TSTALIASID`` or its ARN, an execution by its id or its
ARN. ARNs carry this gateway's region and account (``--region``,
``--account-id``); an ARN of another region or account names nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from router import errors, model
from router.dialects.bedrock import parsing
from router.dialects.common import iso8601
from router.limits import read_body
from router.model import Alias, Flow, FlowVersion
from router.service import Gateway, PageFields

REQUEST_ID_HEADER = "x-amzn-RequestId"
TEST_ALIAS = "TSTALIASID"  # always routes to DRAFT, the flow's working copy
_ID = r"[0-9a-zA-Z]{10}"
_ALIAS_ID = rf"(?:{TEST_ALIAS}|{_ID})"
# Bedrock's execution ids, or a name the gateway generated (router/execution_names):
# those of InvokeFlow and of CloudFlow's unnamed executions, which ListFlowExecutions shows.
_EXECUTION_ID = (
    r"(?:[a-zA-Z0-9-]{1,36}|[0-9a-f]{32}\.(?:[1-9][0-9]{0,4}|DRAFT)\.[A-Za-z0-9_-]{0,128})"
)
_ARN = re.compile(
    rf"arn:aws:bedrock:(?P<region>[a-z0-9-]{{1,20}}):(?P<account>[0-9]{{12}}):"
    rf"flow/(?P<flow>{_ID})(?:/alias/(?P<alias>{_ALIAS_ID})"
    rf"(?:/execution/(?P<execution>{_EXECUTION_ID}))?)?"
)
_ID_RE = re.compile(_ID)
_ALIAS_ID_RE = re.compile(_ALIAS_ID)
_EXECUTION_ID_RE = re.compile(_EXECUTION_ID)


@dataclass(frozen=True, slots=True)
class ArnParts:
    flow: str
    alias: str | None
    execution: str | None


@dataclass(frozen=True, slots=True)
class Arns:
    region: str
    account: str

    # building ---------------------------------------------------------------------
    def flow(self, flow_id: str) -> str:
        return f"arn:aws:bedrock:{self.region}:{self.account}:flow/{flow_id}"

    def alias(self, flow_id: str, alias_id: str) -> str:
        return f"{self.flow(flow_id)}/alias/{alias_id}"

    def execution(self, flow_id: str, alias_id: str, execution_id: str) -> str:
        return f"{self.alias(flow_id, alias_id)}/execution/{execution_id}"

    # parsing ----------------------------------------------------------------------
    def parse(self, arn: str, field_name: str) -> ArnParts:
        """The ids in one of our ARNs; another region's or account's names nothing."""
        found = _ARN.fullmatch(arn)
        if found is None:
            raise errors.InvalidArgument(f"{field_name} {arn!r} is not a flow ARN", field_name)
        if (found["region"], found["account"]) != (self.region, self.account):
            raise errors.NotFound(arn, f"{arn} is not in {self.region}/{self.account}")
        return ArnParts(found["flow"], found["alias"], found["execution"])

    def flow_id(self, identifier: str, field_name: str = "flowIdentifier") -> str:
        if _ID_RE.fullmatch(identifier):
            return identifier
        parts = self.parse(identifier, field_name)
        if parts.alias is not None:
            raise errors.InvalidArgument(f"{field_name} must name a flow", field_name)
        return parts.flow

    def alias_id(self, identifier: str, flow_id: str, field_name: str = "aliasIdentifier") -> str:
        if _ALIAS_ID_RE.fullmatch(identifier):
            return identifier
        parts = self.parse(identifier, field_name)
        if parts.alias is None or parts.execution is not None:
            raise errors.InvalidArgument(f"{field_name} must name a flow alias", field_name)
        _same_flow(parts, flow_id, field_name)
        return parts.alias

    def execution_id(
        self, identifier: str, flow_id: str, alias_id: str, field_name: str = "executionIdentifier"
    ) -> str:
        if _EXECUTION_ID_RE.fullmatch(identifier):
            return identifier
        parts = self.parse(identifier, field_name)
        if parts.execution is None:
            raise errors.InvalidArgument(f"{field_name} must name an execution", field_name)
        _same_flow(parts, flow_id, field_name)
        if parts.alias != alias_id:
            raise errors.InvalidArgument(
                f"{field_name} belongs to alias {parts.alias}, not {alias_id}", field_name
            )
        return parts.execution


def _same_flow(parts: ArnParts, flow_id: str, field_name: str) -> None:
    if parts.flow != flow_id:
        raise errors.InvalidArgument(
            f"{field_name} belongs to flow {parts.flow}, not {flow_id}", field_name
        )


@dataclass(frozen=True, slots=True)
class BedrockSettings:
    """What this dialect needs of the configuration (``--region``, ``--account-id``)."""

    region: str
    account_id: str
    arns: Arns = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arns", Arns(self.region, self.account_id))  # built once


SETTINGS = web.AppKey("bedrock_settings", BedrockSettings)
PAGE_FIELDS = PageFields(limit="maxResults", token="nextToken")


# -- one request ---------------------------------------------------------------------


@dataclass
class Call:
    """One request: path labels, query, JSON body, and what answers it."""

    request: web.Request
    gateway: Gateway
    arns: Arns
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    async def read_body(self) -> None:
        raw = await read_body(self.request)  # bounded in size and time (router/limits)
        if not raw.strip():
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.InvalidArgument("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise errors.InvalidArgument("the request body must be a JSON object")
        # The documents inside (definition, inputs[].content.document) sit a few
        # levels down; the limit applies to them, plus that envelope.
        self.body = model.validate_json_depth(body, "body", model.MAX_JSON_DEPTH + 8, raw)

    def member(self, name: str) -> Any:
        return self.body.get(name)

    def string(self, name: str) -> str | None:
        value = self.body.get(name)
        if value is not None and not isinstance(value, str):
            raise errors.InvalidArgument(f"{name} must be a string", name)
        return value

    def required(self, name: str) -> str:
        value = self.string(name)
        if value is None or value == "":
            raise errors.MissingParameter(name)
        return value

    def query(self, name: str) -> str | None:
        return self.request.query.get(name)

    def flag(self, name: str) -> bool:
        value = self.query(name)
        if value is None or value == "":
            return False
        if value not in ("true", "false"):
            raise errors.InvalidArgument(f"{name} must be true or false", name)
        return value == "true"

    def page(self) -> tuple[int, str | None, PageFields]:
        limit = parsing.validate_max_results(self.query("maxResults"))
        return limit or DEFAULT_MAX_RESULTS, self.query("nextToken") or None, PAGE_FIELDS

    # resources ----------------------------------------------------------------------
    def flow_id(self) -> str:
        return self.arns.flow_id(self.labels["flow"])

    async def flow(self) -> Flow:
        return await self.gateway.flow_by_id(self.flow_id())

    def alias_id(self, flow_id: str) -> str:
        return self.arns.alias_id(self.labels["alias"], flow_id)

    async def alias(self, flow: Flow) -> Alias:
        alias_id = self.alias_id(flow.id)
        if alias_id == TEST_ALIAS:
            raise errors.InvalidArgument(
                f"aliasIdentifier {TEST_ALIAS} is the built-in test alias and cannot be changed",
                "aliasIdentifier",
            )
        return await self.gateway.alias_by_id(flow, alias_id)


DEFAULT_MAX_RESULTS = 100


# -- bodies --------------------------------------------------------------------------


def _optional(body: dict[str, Any], name: str, value: Any) -> None:
    """Members Bedrock constrains to non-empty values are left out when empty."""
    if value not in (None, ""):
        body[name] = value


def _definition(body: dict[str, Any], definition: Any) -> None:
    # A CloudFlow flow's definition is FDL text; Bedrock's is a structure.
    if isinstance(definition, dict):
        body["definition"] = definition


def flow_body(flow: Flow, arns: Arns, *, summary: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": flow.id,
        "arn": arns.flow(flow.id),
        "name": flow.name,
        "status": flow.status,
        "version": model.DRAFT,
        "createdAt": iso8601(flow.created_at),
        "updatedAt": iso8601(flow.updated_at),
    }
    _optional(body, "description", flow.description)
    if summary:
        return body
    body["executionRoleArn"] = flow.role_arn
    _optional(body, "customerEncryptionKeyArn", flow.encryption_key_arn)
    _definition(body, flow.definition)
    return body


def version_body(
    flow: Flow, version: FlowVersion, arns: Arns, *, summary: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": flow.id,
        "arn": arns.flow(flow.id),
        "status": "Prepared",  # a version is an immutable, runnable snapshot
        "version": str(version.version),
        "createdAt": iso8601(version.created_at),
    }
    if summary:
        return body
    body["name"] = flow.name
    body["executionRoleArn"] = version.role_arn
    _optional(body, "description", version.description)
    _optional(body, "customerEncryptionKeyArn", flow.encryption_key_arn)
    _definition(body, version.definition)
    return body


def alias_body(alias: Alias, arns: Arns) -> dict[str, Any]:
    """Every routing entry is listed: an alias made through CloudFlow may have two."""
    body: dict[str, Any] = {
        "id": alias.id,
        "arn": arns.alias(alias.flow_id, alias.id),
        "flowId": alias.flow_id,
        "name": alias.name,
        "routingConfiguration": [{"flowVersion": str(r.version)} for r in alias.routes],
        "createdAt": iso8601(alias.created_at),
        "updatedAt": iso8601(alias.updated_at),
    }
    _optional(body, "description", alias.description)
    return body


def draft_alias_body(flow: Flow, arns: Arns) -> dict[str, Any]:
    return {
        "id": TEST_ALIAS,
        "arn": arns.alias(flow.id, TEST_ALIAS),
        "flowId": flow.id,
        "name": TEST_ALIAS,
        "routingConfiguration": [{"flowVersion": model.DRAFT}],
        "createdAt": iso8601(flow.created_at),
        "updatedAt": iso8601(flow.updated_at),
    }
