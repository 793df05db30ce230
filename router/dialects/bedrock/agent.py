"""bedrock-agent: the flow, version, alias and tag operations.

Each handler validates with the model (Bedrock's value rules live in
``router/model.py``, its wire structures in ``parsing``), calls the
:class:`~router.service.Gateway` and shapes the answer (docs/wire.md §3.3). Creates
that carry a ``clientToken`` (botocore always sends one) go through
:meth:`~router.service.Gateway.idempotent`; the token is validated before
anything is claimed.
"""

from __future__ import annotations

from typing import Any

from router import errors, model
from router.dialects.bedrock import parsing
from router.dialects.bedrock.shapes import (
    TEST_ALIAS,
    Call,
    alias_body,
    draft_alias_body,
    flow_body,
    version_body,
)
from router.idempotency import Create
from router.model import Alias, AliasUpdate, Api, Flow, FlowUpdate, FlowVersion

API = Api.BEDROCK
ROUTING = "routingConfiguration"


def _page(items: list[dict[str, Any]], key: str, next_token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {key: items}
    if next_token:
        body["nextToken"] = next_token
    return body


# -- flows --------------------------------------------------------------------------


async def create_flow(call: Call) -> dict[str, Any]:
    name = model.validate_name(call.required("name"), API)
    params = {
        "name": name,
        "executionRoleArn": model.validate_role_arn(call.member("executionRoleArn")),
        "description": model.validate_bedrock_description(call.member("description")),
        "customerEncryptionKeyArn": model.validate_kms_key_arn(
            call.member("customerEncryptionKeyArn")
        ),
        "definition": parsing.validate_bedrock_definition(call.member("definition")),
        "tags": model.validate_tags(call.member("tags")),
    }
    token = model.validate_client_token(call.member("clientToken"))
    gateway = call.gateway

    async def make() -> Flow:
        return await gateway.create_flow(
            API,
            name=name,
            definition=params["definition"],
            description=params["description"],
            role_arn=params["executionRoleArn"],
            encryption_key_arn=params["customerEncryptionKeyArn"],
            tags=params["tags"],
        )

    async def discard(flow: Flow) -> None:
        await gateway.delete_flow(flow, force=True)

    flow = await call.gateway.idempotent(
        "bedrock:CreateFlow",
        token,
        params,
        Create(make, lambda f: f.id, gateway.flow_by_id, discard),
    )
    return flow_body(flow, call.arns)


async def get_flow(call: Call) -> dict[str, Any]:
    return {**flow_body(await call.flow(), call.arns), "validations": []}


async def list_flows(call: Call) -> dict[str, Any]:
    limit, token, fields = call.page()
    page = await call.gateway.list_flows(limit, token, fields)
    items = [flow_body(f, call.arns, summary=True) for f in page.items]
    return _page(items, "flowSummaries", page.next_token)


async def update_flow(call: Call) -> dict[str, Any]:
    """PUT semantics: members left out are cleared, except ``definition``.

    A CloudFlow flow's definition is text Bedrock cannot express, so an absent
    ``definition`` keeps the current one rather than wiping it. A new definition
    makes the draft ``NotPrepared`` again.
    """
    flow = await call.flow()
    definition = parsing.validate_bedrock_definition(call.member("definition"))
    update = FlowUpdate(
        name=model.validate_name(call.required("name"), API),
        role_arn=model.validate_role_arn(call.member("executionRoleArn")),
        description=model.validate_bedrock_description(call.member("description")) or "",
        encryption_key_arn=model.validate_kms_key_arn(call.member("customerEncryptionKeyArn")),
        definition=definition,
        status="NotPrepared" if definition is not None else None,
    )
    return flow_body(await call.gateway.update_flow(API, flow, update), call.arns)


async def delete_flow(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    await call.gateway.delete_flow(flow, force=call.flag("skipResourceInUseCheck"))
    return {"id": flow.id}


async def prepare_flow(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    prepared = await call.gateway.update_flow(API, flow, FlowUpdate(status="Prepared"))
    return {"id": prepared.id, "status": prepared.status}


# -- versions -------------------------------------------------------------------------


async def create_flow_version(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    description = model.validate_bedrock_description(call.member("description"))
    token = model.validate_client_token(call.member("clientToken"))
    gateway = call.gateway

    async def make() -> FlowVersion:
        return await gateway.publish_version(API, flow, description)

    async def fetch(version: str) -> FlowVersion:
        return await gateway.version(flow, version)

    async def discard(version: FlowVersion) -> None:
        await gateway.delete_version(flow, str(version.version), force=True)

    version = await call.gateway.idempotent(
        "bedrock:CreateFlowVersion",
        token,
        {"flowId": flow.id, "description": description},
        Create(make, lambda v: str(v.version), fetch, discard),
    )
    return version_body(flow, version, call.arns)


def _version_label(call: Call) -> int:
    return model.parse_version(call.labels["version"], "flowVersion")


async def get_flow_version(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    version = await call.gateway.version(flow, _version_label(call))
    return version_body(flow, version, call.arns)


async def list_flow_versions(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    limit, token, fields = call.page()
    page = await call.gateway.list_versions(flow, limit, token, fields)
    items = [version_body(flow, v, call.arns, summary=True) for v in page.items]
    return _page(items, "flowVersionSummaries", page.next_token)


async def delete_flow_version(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    version = str(_version_label(call))
    await call.gateway.delete_version(flow, version, force=call.flag("skipResourceInUseCheck"))
    return {"id": flow.id, "version": version}


# -- aliases --------------------------------------------------------------------------


def _routes(call: Call) -> tuple[model.Route, ...]:
    entries = parsing.bedrock_route_entries(call.member(ROUTING), ROUTING)
    return call.gateway.routes(API, entries, ROUTING)


async def create_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    name = model.validate_alias_name(call.required("name"), API)
    description = model.validate_bedrock_description(call.member("description"))
    routes = _routes(call)
    tags = model.validate_tags(call.member("tags"))
    token = model.validate_client_token(call.member("clientToken"))
    gateway = call.gateway

    async def make() -> Alias:
        return await gateway.create_alias(
            API, flow, name=name, routes=routes, description=description, tags=tags
        )

    async def fetch(alias_id: str) -> Alias:
        return await gateway.alias_by_id(flow, alias_id)

    async def discard(alias: Alias) -> None:
        await gateway.delete_alias(flow, alias.name)

    params = {
        "flowId": flow.id,
        "name": name,
        "description": description,
        "versions": [r.version for r in routes],
        "tags": tags,
    }
    alias = await call.gateway.idempotent(
        "bedrock:CreateFlowAlias", token, params, Create(make, lambda a: a.id, fetch, discard)
    )
    return alias_body(alias, call.arns)


async def get_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    alias_id = call.alias_id(flow.id)
    if alias_id == TEST_ALIAS:
        return draft_alias_body(flow, call.arns)
    return alias_body(await call.gateway.alias_by_id(flow, alias_id), call.arns)


async def list_flow_aliases(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    limit, token, fields = call.page()
    page = await call.gateway.list_aliases(flow, limit, token, fields)
    items = [alias_body(a, call.arns) for a in page.items]
    return _page(items, "flowAliasSummaries", page.next_token)


async def update_flow_alias(call: Call) -> dict[str, Any]:
    """PUT semantics: ``name`` and ``routingConfiguration`` are required, an absent
    ``description`` clears it."""
    flow = await call.flow()
    alias = await call.alias(flow)
    update = AliasUpdate(
        name=model.validate_alias_name(call.required("name"), API),
        routes=_routes(call),
        description=model.validate_bedrock_description(call.member("description")) or "",
    )
    return alias_body(await call.gateway.update_alias(API, flow, alias.name, update), call.arns)


async def delete_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    alias = await call.alias(flow)
    await call.gateway.delete_alias(flow, alias.name)
    return {"flowId": flow.id, "id": alias.id}


# -- tags --------------------------------------------------------------------------------


async def _tagged(call: Call) -> tuple[Flow, Alias | None]:
    """The flow or alias a ``resourceArn`` names."""
    parts = call.arns.parse(call.labels["arn"], "resourceArn")
    if parts.execution is not None:
        raise errors.InvalidArgument("resourceArn must name a flow or a flow alias", "resourceArn")
    flow = await call.gateway.flow_by_id(parts.flow)
    if parts.alias is None:
        return flow, None
    if parts.alias == TEST_ALIAS:
        raise errors.InvalidArgument(f"{TEST_ALIAS} cannot be tagged", "resourceArn")
    return flow, await call.gateway.alias_by_id(flow, parts.alias)


async def _retag(call: Call, flow: Flow, alias: Alias | None, tags: dict[str, str]) -> None:
    if alias is None:
        await call.gateway.update_flow(API, flow, FlowUpdate(tags=tags))
    else:
        await call.gateway.update_alias(API, flow, alias.name, AliasUpdate(tags=tags))


async def tag_resource(call: Call) -> dict[str, Any]:
    if call.member("tags") is None:
        raise errors.MissingParameter("tags")
    added = model.validate_tags(call.member("tags"))
    flow, alias = await _tagged(call)
    current = (alias or flow).tags
    await _retag(call, flow, alias, {**current, **added})
    return {}


async def untag_resource(call: Call) -> dict[str, Any]:
    keys = set(model.validate_tag_keys(call.request.query.getall("tagKeys", [])))
    flow, alias = await _tagged(call)
    current = (alias or flow).tags
    await _retag(call, flow, alias, {k: v for k, v in current.items() if k not in keys})
    return {}


async def list_tags_for_resource(call: Call) -> dict[str, Any]:
    flow, alias = await _tagged(call)
    return {"tags": dict((alias or flow).tags)}
