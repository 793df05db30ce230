"""Both dialects against a model of the expected state: the strongest partial-write check.

``GatewayModel`` (a hypothesis ``RuleBasedStateMachine``) mixes valid and
invalid writes through CloudFlow and Bedrock on the same flows: creates with
taken or malformed names, routes to missing versions, deletes of versions in
use (with and without ``skipResourceInUseCheck``), renames onto taken names,
client-token replays and mismatches, executions through aliases and versions,
and requests broken at the transport level. For every request the model
predicts success or the set of acceptable error codes; after every step the
gateway's own answers (ListFlows, ListFlowVersions, ListFlowAliases, through
either dialect) must equal the model, so a failed write that left anything
behind, or a successful one that lost something, is caught where it happens.
After each run the store is walked (and, on Redis, its raw keys checked).

A second test sends random requests of both dialects to a Redis-backed gateway
and walks the store and its keys afterwards.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from router.dialects import bedrock, cloudflow
from tests.fuzz.harness import (
    Answer,
    Seed,
    Target,
    check_bedrock,
    check_cloudflow,
    fuzz_settings,
    send_bedrock,
    send_cloudflow,
)
from tests.fuzz.strategies import (
    ACCOUNT,
    DEFINITION,
    FORM,
    KNOWN_BUGS,
    MISSING_ID,
    REGION,
    ROLE,
    TEST_ALIAS,
    bedrock_request,
    cloudflow_request,
)

# The documented patterns (docs/wire.md §2.4, 3.1), written out here, not imported.
CF_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
BR_NAME = re.compile(r"(?:[0-9a-zA-Z][_-]?){1,100}")
CF_EXECUTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
BR_EXECUTION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,35}")


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values three times in four: invalid ones are the seasoning, not the meal."""
    return st.one_of(*[st.sampled_from(valid)] * 3, st.sampled_from(invalid))


# Names valid for both APIs, for one only (_cf: CloudFlow, 9br: Bedrock), for neither.
FLOW_NAMES = mostly(["f1", "f2", "b-1", "_cf", "9br"], ["", "bad name!", "x" * 129, "é"])
ALIAS_NAMES = mostly(["prod", "canary", "v_2", "_a", "7up"], ["12", "", "bad!", "a" * 129])
CF_DESCRIPTIONS = mostly([None, None, "", "d", "d" * 256], ["d" * 257])
BR_DESCRIPTIONS = mostly([None, None, "d", "e", "d" * 200], ["", "d" * 201])
EXECUTION_NAMES = mostly([None, "e1", "e2", "e3"], ["-x", "e_1", "x" * 37])
VERSIONS = st.integers(1, 3)
WEIGHTS = st.sampled_from([0, 1, 30, 70])
# Which of the model's flows (or of a flow's aliases), by position; MISSING: one that is not there.
MISSING = 4
PICK = st.integers(0, MISSING)
INPUTS = [{"nodeName": "FlowInputNode", "content": {"document": {"q": 1}}}]

# RoutingConfigurations as sent, and whether the model accepts their shape.
ROUTE_SPECS = st.one_of(
    st.lists(st.tuples(VERSIONS, WEIGHTS), min_size=1, max_size=2, unique_by=lambda r: r[0]),
    st.lists(st.tuples(VERSIONS, WEIGHTS), min_size=1, max_size=2, unique_by=lambda r: r[0]),
    st.lists(st.tuples(VERSIONS, WEIGHTS), min_size=1, max_size=3),
    st.sampled_from(["[]", "garbage", '{"Version": "1", "Weight": 1}', '[{"Version": "1"}]']),
    st.sampled_from(['[{"Version": "1", "Weight": -1}]', '[{"Version": "1", "Weight": "30"}]']),
    st.sampled_from(['[{"Version": "DRAFT", "Weight": 1}]', '[{"Version": 2, "Weight": 5}]']),
)


def routes_text(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    return json.dumps([{"Version": str(v), "Weight": w} for v, w in spec])


def routes_of(spec: Any) -> list[tuple[int, int]] | None:
    """The routes a RoutingConfigurations value means, or None if it is invalid (CloudFlow)."""
    if isinstance(spec, str):
        return [(2, 5)] if spec == '[{"Version": 2, "Weight": 5}]' else None
    versions = [v for v, _ in spec]
    ok = 1 <= len(spec) <= 2 and len(set(versions)) == len(versions)
    return list(spec) if ok and any(w > 0 for _, w in spec) else None


@dataclass
class MAlias:
    id: str
    name: str
    routes: list[tuple[int, int]]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class MFlow:
    id: str
    name: str
    description: str = ""
    versions: set[int] = field(default_factory=set)
    next_version: int = 1
    aliases: dict[str, MAlias] = field(default_factory=dict)
    executions: dict[str, str] = field(default_factory=dict)  # name -> version
    tags: dict[str, str] = field(default_factory=dict)

    def alias_by_id(self, alias_id: str) -> MAlias | None:
        return next((a for a in self.aliases.values() if a.id == alias_id), None)


@dataclass
class Created:
    """A successful create with a clientToken: what a replay must answer."""

    path: str
    body: dict[str, Any]
    resource: str  # flow id, version number or alias id
    flow_id: str


class GatewayModel(RuleBasedStateMachine):
    target: Target  # set by the subclass each test makes

    def __init__(self) -> None:
        super().__init__()
        self.flows: dict[str, MFlow] = {}  # by id
        self.created: dict[str, Created] = {}  # last token create per operation
        self.steps = 0
        self.touched: set[str] = set()  # flows the current step named
        self._reset()

    # -- plumbing ------------------------------------------------------------------------

    def _reset(self) -> None:
        """Start every run from an empty gateway (CloudFlow DeleteFlow forces)."""
        body = check_cloudflow(self.target.cloudflow("ListFlows", Limit="1000"))
        for flow in body["Flows"]:
            answer = self.target.cloudflow("DeleteFlow", Name=flow["Name"])
            assert answer.status == 200, answer

    @initialize(cloudflow_first=st.booleans())
    def two_flows(self, cloudflow_first: bool) -> None:
        """A flow from each dialect with two versions and an alias, so that most steps
        have something to act on."""
        cf_flow = br_flow = None
        for step in ("cf", "br") if cloudflow_first else ("br", "cf"):
            if step == "cf":
                answer = self.cf("CreateFlow", Name="f1", Definition="version: v1")
                assert answer.status == 200, answer
                cf_flow = MFlow(answer.json()["Id"], "f1")
                self.flows[cf_flow.id] = cf_flow
            else:
                body = {"name": "b-1", "executionRoleArn": ROLE, "definition": DEFINITION}
                answer = self.br("POST", "/flows/", body)
                assert answer.status == 201, answer
                br_flow = MFlow(answer.json()["id"], "b-1")
                self.flows[br_flow.id] = br_flow
        assert cf_flow is not None and br_flow is not None
        for flow in (cf_flow, br_flow):
            for _ in range(2):
                self.cf("PublishFlowVersion", FlowName=flow.name)
                flow.versions.add(flow.next_version)
                flow.next_version += 1
        config = routes_text([(1, 30), (2, 70)])
        answer = self.cf(
            "CreateFlowAlias", FlowName="f1", Name="prod", RoutingConfigurations=config
        )
        assert answer.status == 200, answer
        cf_flow.aliases["prod"] = MAlias(
            self._alias_id(cf_flow, "prod"), "prod", [(1, 30), (2, 70)]
        )
        live = {"name": "live", "routingConfiguration": [{"flowVersion": "1"}]}
        answer = self.br("POST", f"/flows/{br_flow.id}/aliases", live)
        assert answer.status == 201, answer
        br_flow.aliases["live"] = MAlias(answer.json()["id"], "live", [(1, 1)])

    def cf(self, action: str, **params: str | None) -> Answer:
        sent = {k: v for k, v in params.items() if v is not None}
        answer = self.target.cloudflow(action, **sent)
        check_cloudflow(answer)
        return answer

    def br(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Answer:
        if query:
            path += "?" + urlencode(query, quote_via=quote)
        answer = self.target.bedrock(method, path, body)
        check_bedrock(answer)
        return answer

    @staticmethod
    def outcome(answer: Answer, errors: set[str], tolerated: Set[str] = frozenset()) -> bool:
        """True on success; the error code must be one the model expects, and success
        only when it expects none. ``tolerated``: errors of a known bug (KNOWN_BUGS),
        accepted instead of success until it is fixed."""
        code = None
        if answer.status >= 400:
            code = answer.header("x-amzn-ErrorType") or answer.json().get("Code")
        if not errors and code in tolerated:
            return False
        if errors:
            assert answer.status >= 400 and code in errors, (
                f"expected one of {sorted(errors)}, got {answer}"
            )
            return False
        assert answer.status < 300, f"expected success, got {answer}"
        return True

    def by_name(self, name: str) -> MFlow | None:
        found = next((f for f in self.flows.values() if f.name == name), None)
        if found is not None:
            self.touched.add(found.id)
        return found

    def flow_at(self, i: int) -> MFlow | None:
        flows = sorted(self.flows.values(), key=lambda f: f.name)
        found = flows[i % len(flows)] if flows and i != MISSING else None
        if found is not None:
            self.touched.add(found.id)
        return found

    @staticmethod
    def alias_at(flow: MFlow | None, i: int) -> MAlias | None:
        if flow is None:
            return None
        aliases = sorted(flow.aliases.values(), key=lambda a: a.name)
        return aliases[i % len(aliases)] if aliases and i != MISSING else None

    def flow_ref(self, flow: MFlow | None, form: str) -> tuple[str, set[str]]:
        """A flow identifier and the errors it causes by itself."""
        if form == "garbage":
            return quote("bad id!", safe=""), {"ValidationException"}
        if flow is None:
            return MISSING_ID, {"ResourceNotFoundException"}
        if form == "arn":
            return quote(f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{flow.id}", safe=""), set()
        return flow.id, set()

    def alias_ref(self, flow: MFlow | None, alias: MAlias | None, form: str) -> str:
        alias_id = alias.id if alias is not None else MISSING_ID
        if form == "arn" and flow is not None:
            arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{flow.id}/alias/{alias_id}"
            return quote(arn, safe="")
        return alias_id

    def in_use(self, flow: MFlow, version: int) -> bool:
        return any(version in dict(a.routes) for a in flow.aliases.values())

    @staticmethod
    def stale_routes_bug(flow: MFlow | None, alias: MAlias | None, bedrock: bool) -> Set[str]:
        """KNOWN_BUGS "alias-update-checks-old-routes": an alias routed to a version deleted
        with skipResourceInUseCheck=true cannot be tagged or re-described."""
        if "alias-update-checks-old-routes" not in KNOWN_BUGS or flow is None or alias is None:
            return frozenset()
        if all(v in flow.versions for v, _ in alias.routes):
            return frozenset()
        return {"ResourceNotFoundException" if bedrock else "FlowVersionNotExists"}

    @precondition(lambda self: len(self.flows) < 2)
    @rule(bedrock_side=st.booleans())
    def restore(self, bedrock_side: bool) -> None:
        """Deletes empty the gateway quickly: bring back a flow with two versions."""
        name = next(n for n in ("f1", "f2", "b-1", "ab") if self.by_name(n) is None)
        if bedrock_side:
            body = {"name": name, "executionRoleArn": ROLE, "definition": DEFINITION}
            answer = self.br("POST", "/flows/", body)
            flow = MFlow(answer.json()["id"], name)
        else:
            answer = self.cf("CreateFlow", Name=name, Definition="version: v1")
            flow = MFlow(answer.json()["Id"], name)
        assert answer.status in (200, 201), answer
        self.flows[flow.id] = flow
        for _ in range(2):
            assert self.cf("PublishFlowVersion", FlowName=name).status == 200
            flow.versions.add(flow.next_version)
            flow.next_version += 1

    # -- flows ----------------------------------------------------------------------------

    @rule(name=FLOW_NAMES, description=CF_DESCRIPTIONS)
    def cf_create_flow(self, name: str, description: str | None) -> None:
        errors = set()
        if name == "":
            errors.add("MissingRequiredParams")
        elif not CF_NAME.fullmatch(name):
            errors.add("InvalidArgument")
        if description is not None and len(description) > 256:
            errors.add("InvalidArgument")
        if name and self.by_name(name) is not None:
            errors.add("FlowAlreadyExists")
        answer = self.cf("CreateFlow", Name=name, Definition="version: v1", Description=description)
        if self.outcome(answer, errors):
            body = answer.json()
            assert body["Name"] == name
            self.flows[body["Id"]] = MFlow(body["Id"], name, description or "")

    @rule(
        name=FLOW_NAMES,
        role=mostly([ROLE], ["bad", None]),
        description=BR_DESCRIPTIONS,
        definition=mostly([DEFINITION, None], ["text"]),
        token=st.booleans(),
    )
    def br_create_flow(
        self, name: str, role: str | None, description: str | None, definition: Any, token: bool
    ) -> None:
        errors = set()
        if not BR_NAME.fullmatch(name) or role != ROLE or definition == "text":
            errors.add("ValidationException")
        if description is not None and not 1 <= len(description) <= 200:
            errors.add("ValidationException")
        if self.by_name(name) is not None:
            errors.add("ConflictException")
        body: dict[str, Any] = {"name": name, "executionRoleArn": role}
        body.update({"description": description, "definition": definition})
        if token:
            body["clientToken"] = str(uuid.uuid4())
        body = {k: v for k, v in body.items() if v is not None}
        answer = self.br("POST", "/flows/", body)
        if self.outcome(answer, errors):
            assert answer.status == 201, answer
            flow_id = answer.json()["id"]
            self.flows[flow_id] = MFlow(flow_id, name, description or "")
            if token:
                self.created["CreateFlow"] = Created("/flows/", body, flow_id, flow_id)

    @rule(i=PICK, description=CF_DESCRIPTIONS)
    def cf_update_flow(self, i: int, description: str | None) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        if description is not None and len(description) > 256:
            errors.add("InvalidArgument")
        name = flow.name if flow is not None else "nosuch"
        answer = self.cf("UpdateFlow", Name=name, Description=description)
        if self.outcome(answer, errors) and flow is not None and description is not None:
            flow.description = description

    @rule(
        i=PICK,
        form=mostly(["id", "arn"], ["garbage"]),
        name=FLOW_NAMES,
        description=BR_DESCRIPTIONS,
    )
    def br_update_flow(self, i: int, form: str, name: str, description: str | None) -> None:
        flow = self.flow_at(i)
        ref, errors = self.flow_ref(flow, form)
        if not BR_NAME.fullmatch(name):
            errors.add("ValidationException")
        if description is not None and not 1 <= len(description) <= 200:
            errors.add("ValidationException")
        other = self.by_name(name)
        if other is not None and other is not flow:
            errors.add("ConflictException")
        body = {"name": name, "executionRoleArn": ROLE, "description": description}
        answer = self.br("PUT", f"/flows/{ref}/", {k: v for k, v in body.items() if v is not None})
        if self.outcome(answer, errors):
            assert flow is not None
            flow.name, flow.description = name, description or ""

    @rule(i=PICK)
    def cf_delete_flow(self, i: int) -> None:
        flow = self.flow_at(i)
        answer = self.cf("DeleteFlow", Name=flow.name if flow else "nosuch")
        if self.outcome(answer, set() if flow else {"FlowNotExists"}):
            assert flow is not None
            del self.flows[flow.id]

    @rule(
        i=PICK,
        form=mostly(["id", "arn"], ["garbage"]),
        skip=mostly([None, "true", "false"], ["maybe"]),
    )
    def br_delete_flow(self, i: int, form: str, skip: str | None) -> None:
        flow = self.flow_at(i)
        ref, errors = self.flow_ref(flow, form)
        if skip == "maybe":
            errors.add("ValidationException")
        if flow is not None and flow.aliases and skip != "true":
            errors.add("ConflictException")
        query = {"skipResourceInUseCheck": skip} if skip is not None else None
        if self.outcome(self.br("DELETE", f"/flows/{ref}/", query=query), errors):
            assert flow is not None
            del self.flows[flow.id]

    # -- versions ----------------------------------------------------------------------------

    @rule(i=PICK, description=CF_DESCRIPTIONS)
    def cf_publish_version(self, i: int, description: str | None) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        if description is not None and len(description) > 256:
            errors.add("InvalidArgument")
        name = flow.name if flow is not None else "nosuch"
        answer = self.cf("PublishFlowVersion", FlowName=name, Description=description)
        if self.outcome(answer, errors):
            assert flow is not None
            assert answer.json()["Version"] == str(flow.next_version), answer
            flow.versions.add(flow.next_version)
            flow.next_version += 1

    @rule(
        i=PICK,
        form=mostly(["id", "arn"], ["garbage"]),
        description=BR_DESCRIPTIONS,
        token=st.booleans(),
    )
    def br_create_version(self, i: int, form: str, description: str | None, token: bool) -> None:
        flow = self.flow_at(i)
        ref, errors = self.flow_ref(flow, form)
        if description is not None and not 1 <= len(description) <= 200:
            errors.add("ValidationException")
        body: dict[str, Any] = {} if description is None else {"description": description}
        if token:
            body["clientToken"] = str(uuid.uuid4())
        answer = self.br("POST", f"/flows/{ref}/versions", body)
        if self.outcome(answer, errors):
            assert flow is not None and answer.status == 201
            assert answer.json()["version"] == str(flow.next_version), answer
            flow.versions.add(flow.next_version)
            if token:
                path = f"/flows/{ref}/versions"
                self.created["CreateFlowVersion"] = Created(
                    path, body, str(flow.next_version), flow.id
                )
            flow.next_version += 1

    @rule(i=PICK, version=st.sampled_from(["1", "2", "3", "0", "abc"]))
    def cf_delete_version(self, i: int, version: str) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        if not version.isdigit() or version == "0":
            errors.add("InvalidArgument")
        elif flow is not None and int(version) not in flow.versions:
            errors.add("FlowVersionNotExists")
        elif flow is not None and self.in_use(flow, int(version)):
            errors.add("ResourceInUse")
        name = flow.name if flow is not None else "nosuch"
        answer = self.cf("DeleteFlowVersion", FlowName=name, FlowVersion=version)
        if self.outcome(answer, errors):
            assert flow is not None
            flow.versions.discard(int(version))

    @rule(
        i=PICK,
        form=st.sampled_from(["id", "arn"]),
        version=st.sampled_from(["1", "2", "3", "DRAFT"]),
        skip=st.sampled_from([None, "true", "false"]),
    )
    def br_delete_version(self, i: int, form: str, version: str, skip: str | None) -> None:
        flow = self.flow_at(i)
        ref, errors = self.flow_ref(flow, form)
        if version == "DRAFT":
            errors.add("ValidationException")
        elif flow is not None and int(version) not in flow.versions:
            errors.add("ResourceNotFoundException")
        elif flow is not None and self.in_use(flow, int(version)) and skip != "true":
            errors.add("ConflictException")
        query = {"skipResourceInUseCheck": skip} if skip is not None else None
        answer = self.br("DELETE", f"/flows/{ref}/versions/{version}/", query=query)
        if self.outcome(answer, errors):
            assert flow is not None
            flow.versions.discard(int(version))

    # -- aliases ------------------------------------------------------------------------------

    def _alias_name_errors(self, name: str, pattern: re.Pattern[str], bedrock: bool) -> set[str]:
        invalid = "ValidationException" if bedrock else "InvalidArgument"
        if name == "":
            return {"ValidationException" if bedrock else "MissingRequiredParams"}
        if not pattern.fullmatch(name) or name.isdigit():
            return {invalid}
        return set()

    @rule(
        i=PICK,
        name=ALIAS_NAMES,
        spec=ROUTE_SPECS,
        description=CF_DESCRIPTIONS,
    )
    def cf_create_alias(self, i: int, name: str, spec: Any, description: str | None) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        errors |= self._alias_name_errors(name, CF_NAME, bedrock=False)
        routes = routes_of(spec)
        if routes is None:
            errors.add("InvalidArgument")
        if description is not None and len(description) > 256:
            errors.add("InvalidArgument")
        if flow is not None and name in flow.aliases:
            errors.add("FlowAliasAlreadyExists")
        if flow is not None and routes and any(v not in flow.versions for v, _ in routes):
            errors.add("FlowVersionNotExists")
        answer = self.cf(
            "CreateFlowAlias",
            FlowName=flow.name if flow is not None else "nosuch",
            Name=name,
            RoutingConfigurations=routes_text(spec),
            Description=description,
        )
        if self.outcome(answer, errors):
            assert flow is not None and routes is not None
            alias_id = self._alias_id(flow, name)
            flow.aliases[name] = MAlias(alias_id, name, routes, description or "")

    def _alias_id(self, flow: MFlow, name: str) -> str:
        answer = self.br("GET", f"/flows/{flow.id}/aliases", query={"maxResults": "1000"})
        ids = {a["name"]: a["id"] for a in answer.json()["flowAliasSummaries"]}
        return str(ids[name])

    @rule(
        i=PICK,
        form=mostly(["id", "arn"], ["garbage"]),
        name=ALIAS_NAMES,
        versions=st.lists(st.sampled_from(["1", "2", "3", "DRAFT"]), max_size=2),
        description=BR_DESCRIPTIONS,
        token=st.booleans(),
    )
    def br_create_alias(
        self,
        i: int,
        form: str,
        name: str,
        versions: list[str],
        description: str | None,
        token: bool,
    ) -> None:
        flow = self.flow_at(i)
        ref, errors = self.flow_ref(flow, form)
        errors |= self._alias_name_errors(name, BR_NAME, bedrock=True)
        if len(versions) != 1 or versions[0] == "DRAFT":
            errors.add("ValidationException")
        if description is not None and not 1 <= len(description) <= 200:
            errors.add("ValidationException")
        if flow is not None and name in flow.aliases:
            errors.add("ConflictException")
        if flow is not None and any(v.isdigit() and int(v) not in flow.versions for v in versions):
            errors.add("ResourceNotFoundException")
        body: dict[str, Any] = {
            "name": name,
            "routingConfiguration": [{"flowVersion": v} for v in versions],
        }
        if description is not None:
            body["description"] = description
        if token:
            body["clientToken"] = str(uuid.uuid4())
        answer = self.br("POST", f"/flows/{ref}/aliases", body)
        if self.outcome(answer, errors):
            assert flow is not None and answer.status == 201
            created = answer.json()
            assert [r["flowVersion"] for r in created["routingConfiguration"]] == versions
            alias = MAlias(created["id"], name, [(int(versions[0]), 1)], description or "")
            flow.aliases[name] = alias
            if token:
                path = f"/flows/{ref}/aliases"
                self.created["CreateFlowAlias"] = Created(path, body, alias.id, flow.id)

    @rule(
        i=PICK,
        j=PICK,
        spec=st.one_of(st.none(), ROUTE_SPECS),
        description=CF_DESCRIPTIONS,
    )
    def cf_update_alias(self, i: int, j: int, spec: Any, description: str | None) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j)
        errors = set() if flow is not None else {"FlowNotExists"}
        if flow is not None and alias is None:
            errors.add("FlowAliasNotExists")
        routes = routes_of(spec) if spec is not None else None
        if spec is not None and routes is None:
            errors.add("InvalidArgument")
        if flow is not None and routes and any(v not in flow.versions for v, _ in routes):
            errors.add("FlowVersionNotExists")
        if description is not None and len(description) > 256:
            errors.add("InvalidArgument")
        answer = self.cf(
            "UpdateFlowAlias",
            FlowName=flow.name if flow is not None else "nosuch",
            Name=alias.name if alias is not None else "nosuch",
            RoutingConfigurations=routes_text(spec) if spec is not None else None,
            Description=description,
        )
        stale = self.stale_routes_bug(flow, alias, bedrock=False) if spec is None else set()
        if self.outcome(answer, errors, stale):
            assert alias is not None
            if routes is not None:
                alias.routes = routes
            if description is not None:
                alias.description = description

    @rule(
        i=PICK,
        j=PICK,
        form=st.sampled_from(["id", "arn", "test"]),
        name=ALIAS_NAMES,
        version=st.sampled_from(["1", "2", "3"]),
        description=BR_DESCRIPTIONS,
    )
    def br_update_alias(
        self, i: int, j: int, form: str, name: str, version: str, description: str | None
    ) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j)
        ref, errors = self.flow_ref(flow, "id")
        if form == "test":
            aref = TEST_ALIAS
            errors.add("ValidationException")
        else:
            aref = self.alias_ref(flow, alias, form)
            if alias is None:
                errors.add("ResourceNotFoundException")
        errors |= self._alias_name_errors(name, BR_NAME, bedrock=True)
        if description is not None and not 1 <= len(description) <= 200:
            errors.add("ValidationException")
        if flow is not None and int(version) not in flow.versions:
            errors.add("ResourceNotFoundException")
        if flow is not None and name in flow.aliases and (alias is None or name != alias.name):
            errors.add("ConflictException")
        body: dict[str, Any] = {"name": name, "routingConfiguration": [{"flowVersion": version}]}
        if description is not None:
            body["description"] = description
        answer = self.br("PUT", f"/flows/{ref}/aliases/{aref}", body)
        if self.outcome(answer, errors):
            assert flow is not None and alias is not None
            del flow.aliases[alias.name]
            alias.name, alias.routes = name, [(int(version), 1)]
            alias.description = description or ""
            flow.aliases[name] = alias

    @rule(i=PICK, j=PICK)
    def cf_delete_alias(self, i: int, j: int) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j)
        errors = (
            {"FlowNotExists"}
            if flow is None
            else {"FlowAliasNotExists"}
            if alias is None
            else set()
        )
        answer = self.cf(
            "DeleteFlowAlias",
            FlowName=flow.name if flow is not None else "nosuch",
            Name=alias.name if alias is not None else "nosuch",
        )
        if self.outcome(answer, errors):
            assert flow is not None and alias is not None
            del flow.aliases[alias.name]

    @rule(i=PICK, j=PICK, form=st.sampled_from(["id", "arn", "test"]))
    def br_delete_alias(self, i: int, j: int, form: str) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j)
        ref, errors = self.flow_ref(flow, "id")
        if form == "test":
            aref = TEST_ALIAS
            errors.add("ValidationException")
        else:
            aref = self.alias_ref(flow, alias, form)
            if alias is None:
                errors.add("ResourceNotFoundException")
        if self.outcome(self.br("DELETE", f"/flows/{ref}/aliases/{aref}"), errors):
            assert flow is not None and alias is not None
            del flow.aliases[alias.name]

    # -- tags ---------------------------------------------------------------------------------

    @rule(
        i=PICK,
        j=st.one_of(st.none(), PICK),
        tags=st.dictionaries(
            st.sampled_from(["team", "env", "", "bad!", "k" * 129]),
            st.sampled_from(["a", "b", "", "v" * 257, "é"]),
            max_size=2,
        ),
    )
    def br_tag(self, i: int, j: int | None, tags: dict[str, str]) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j) if j is not None else None
        errors = set()
        if flow is None or (j is not None and alias is None):
            errors.add("ResourceNotFoundException")
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or key == "bad!" or len(value) > 256 or value == "é":
                errors.add("ValidationException")
        arn = self._resource_arn(flow, alias if j is not None else None, j is not None)
        answer = self.br("POST", f"/tags/{quote(arn, safe='')}", {"tags": tags})
        if self.outcome(answer, errors, self.stale_routes_bug(flow, alias, bedrock=True)):
            resource = alias if alias is not None else flow
            assert resource is not None
            resource.tags.update(tags)
        self._check_tags(flow, alias if j is not None else None, j is not None)

    @rule(
        i=PICK, j=st.one_of(st.none(), PICK), keys=st.lists(st.sampled_from(["team", "env", "x"]))
    )
    def br_untag(self, i: int, j: int | None, keys: list[str]) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j) if j is not None else None
        missing = flow is None or (j is not None and alias is None)
        arn = self._resource_arn(flow, alias, j is not None)
        query = urlencode([("tagKeys", k) for k in keys])
        answer = self.br("DELETE", f"/tags/{quote(arn, safe='')}" + (f"?{query}" if keys else ""))
        errors = {"ResourceNotFoundException"} if missing else set()
        if self.outcome(answer, errors, self.stale_routes_bug(flow, alias, bedrock=True)):
            resource = alias if alias is not None else flow
            assert resource is not None
            for key in keys:
                resource.tags.pop(key, None)
        self._check_tags(flow, alias, j is not None)

    def _resource_arn(self, flow: MFlow | None, alias: MAlias | None, of_alias: bool) -> str:
        base = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{flow.id if flow else MISSING_ID}"
        if not of_alias:
            return base
        return f"{base}/alias/{alias.id if alias else MISSING_ID}"

    def _check_tags(self, flow: MFlow | None, alias: MAlias | None, of_alias: bool) -> None:
        resource = alias if of_alias else flow
        if resource is None:
            return
        arn = self._resource_arn(flow, alias, of_alias)
        answer = self.br("GET", f"/tags/{quote(arn, safe='')}")
        assert answer.json()["tags"] == resource.tags, (answer, resource)

    # -- executions ---------------------------------------------------------------------------

    @rule(
        i=PICK,
        qualifier=st.one_of(st.none(), st.sampled_from(["1", "2", "0", "nosuch"]), PICK),
        name=EXECUTION_NAMES,
    )
    def cf_start_execution(self, i: int, qualifier: Any, name: str | None) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        possible: set[str] = set()
        if isinstance(qualifier, int):  # an alias of the flow, by position
            alias = self.alias_at(flow, qualifier)
            qualifier = alias.name if alias is not None else "nosuch"
            if alias is not None:
                possible = {str(v) for v, w in alias.routes if w > 0}
        if flow is not None:
            if qualifier is None:
                if flow.versions:
                    possible = {str(max(flow.versions))}
                else:
                    errors.add("FlowVersionNotExists")
            elif qualifier == "0":
                errors.add("InvalidArgument")
            elif qualifier.isdigit():
                possible = {qualifier}
                if int(qualifier) not in flow.versions:
                    errors.add("FlowVersionNotExists")
            elif qualifier not in flow.aliases:
                errors.add("FlowAliasNotExists")
        if name is not None and not CF_EXECUTION.fullmatch(name):
            errors.add("InvalidArgument")
        if flow is not None and name in flow.executions:
            errors.add("ExecutionAlreadyExists")
        answer = self.cf(
            "StartExecution",
            FlowName=flow.name if flow is not None else "nosuch",
            Qualifier=qualifier,
            ExecutionName=name,
            Input='{"a": 1}',
        )
        if self.outcome(answer, errors):
            assert flow is not None
            version = answer.header("X-Flow-Version")
            assert version in possible, (answer, possible)
            if name is not None:
                flow.executions[name] = str(version)

    @rule(
        i=PICK,
        j=PICK,
        form=st.sampled_from(["id", "arn", "test"]),
        name=EXECUTION_NAMES,
        invoke=st.booleans(),
    )
    def br_execute(self, i: int, j: int, form: str, name: str | None, invoke: bool) -> None:
        flow = self.flow_at(i)
        alias = self.alias_at(flow, j)
        ref, errors = self.flow_ref(flow, "id")
        if form == "test":
            aref, possible = TEST_ALIAS, {"DRAFT"}
        else:
            aref = self.alias_ref(flow, alias, form)
            possible = {str(v) for v, w in alias.routes if w > 0} if alias else set()
            if alias is None:
                errors.add("ResourceNotFoundException")
        body: dict[str, Any] = {"inputs": INPUTS}
        path = f"/flows/{ref}/aliases/{aref}"
        if invoke:
            if name is not None:
                body["executionId"] = name
                if not CF_EXECUTION.fullmatch(name):
                    errors.add("ValidationException")
        else:
            path += "/executions"
            if name is not None:
                body["flowExecutionName"] = name
                if not BR_EXECUTION.fullmatch(name):
                    errors.add("ValidationException")
                elif flow is not None and name in flow.executions:
                    errors.add("ConflictException")
        answer = self.br("POST", path, body)
        if self.outcome(answer, errors):
            assert flow is not None
            version = answer.header("X-Flow-Version")
            assert version in possible, (answer, possible)
            if not invoke and name is not None:
                flow.executions[name] = str(version)

    @rule(i=PICK, name=st.sampled_from(["e1", "e2", "nosuch"]))
    def cf_describe_execution(self, i: int, name: str) -> None:
        flow = self.flow_at(i)
        errors = set() if flow is not None else {"FlowNotExists"}
        if flow is not None and name not in flow.executions:
            errors.add("ExecutionNotExists")
        answer = self.cf(
            "DescribeExecution",
            FlowName=flow.name if flow is not None else "nosuch",
            ExecutionName=name,
        )
        if self.outcome(answer, errors):
            assert flow is not None
            assert answer.header("X-Flow-Version") == flow.executions[name], answer

    # -- idempotency --------------------------------------------------------------------------

    @precondition(lambda self: bool(self.created))
    @rule(
        which=st.sampled_from(["CreateFlow", "CreateFlowVersion", "CreateFlowAlias"]),
        same=st.booleans(),
    )
    def br_reuse_token(self, which: str, same: bool) -> None:
        """The same clientToken again: the same parameters answer the first resource (or
        404 once it is gone), others are a ConflictException; nothing new is created."""
        created = self.created.get(which)
        if created is None:
            return
        body = dict(created.body)
        if not same:
            body["description"] = "changed" if body.get("description") != "changed" else "other"
        flow = self.flows.get(created.flow_id)
        if which == "CreateFlow":
            exists = flow is not None
        elif which == "CreateFlowVersion":
            exists = flow is not None and int(created.resource) in flow.versions
        else:
            exists = flow is not None and flow.alias_by_id(created.resource) is not None
        errors = set()
        if which != "CreateFlow" and flow is None:
            errors.add("ResourceNotFoundException")
        elif not same:
            errors.add("ConflictException")
        elif not exists:
            errors.add("ResourceNotFoundException")
        answer = self.br("POST", created.path, body)
        if self.outcome(answer, errors):
            key = {"CreateFlow": "id", "CreateFlowVersion": "version", "CreateFlowAlias": "id"}
            assert str(answer.json()[key[which]]) == created.resource, (answer, created)

    # -- broken requests ----------------------------------------------------------------------

    @rule(
        i=PICK,
        how=st.sampled_from(["text/plain", "not-utf8", "json-body", "no-body"]),
        action=st.sampled_from(
            ["CreateFlow", "DeleteFlow", "PublishFlowVersion", "CreateFlowAlias", "DeleteFlowAlias"]
        ),
    )
    def cf_broken_write(self, i: int, how: str, action: str) -> None:
        """A write whose parameters never arrive as a form: refused, nothing written."""
        flow = self.flow_at(i)
        name = flow.name if flow is not None else "f9"
        params = {"Name": "new1", "FlowName": name, "Definition": "d"}
        params["RoutingConfigurations"] = '[{"Version":"1","Weight":1}]'
        if action == "DeleteFlow":
            params["Name"] = name
        form = urlencode(params).encode()
        content_type, body = {
            "text/plain": ("text/plain", form),
            "not-utf8": (FORM, form + b"&Description=\xff\xfe"),
            "json-body": ("application/json", json.dumps(params).encode()),
            "no-body": (FORM, b""),
        }[how]
        target = f"/?Action={action}&Format=json"
        answer = self.target.client.send("POST", target, body, [("Content-Type", content_type)])
        check_cloudflow(answer)
        assert answer.status == 400, answer

    @rule(
        i=PICK,
        body=st.sampled_from([b"{", b"[]", b'"x"', b"\xff", b'{"name": 1}', b"null"]),
        op=st.sampled_from(["flow", "version", "alias", "update-alias", "update-flow"]),
    )
    def br_broken_write(self, i: int, body: bytes, op: str) -> None:
        """A Bedrock write with a body that is not a valid request: refused, nothing written."""
        flow = self.flow_at(i)
        ref = flow.id if flow is not None else MISSING_ID
        alias = self.alias_at(flow, 0)
        aref = alias.id if alias is not None else MISSING_ID
        method, path = {
            "flow": ("POST", "/flows/"),
            "version": ("POST", f"/flows/{ref}/versions"),
            "alias": ("POST", f"/flows/{ref}/aliases"),
            "update-alias": ("PUT", f"/flows/{ref}/aliases/{aref}"),
            "update-flow": ("PUT", f"/flows/{ref}/"),
        }[op]
        if op == "version" and body == b'{"name": 1}':
            body = b'{"description": 1}'  # CreateFlowVersion has no name: this one is valid
        answer = self.target.client.send(method, path, body, [("Content-Type", "application/json")])
        check_bedrock(answer)
        assert 400 <= answer.status < 500, answer

    # -- the state, as the gateway tells it -------------------------------------------------

    @invariant()
    def gateway_matches_model(self) -> None:
        """Every flow after every step, as far as ListFlows tells; versions and aliases of
        the flows the step named, and of all flows every few steps (a write that
        disturbs another flow is caught there)."""
        self.steps += 1
        self.check(everything=self.steps % 5 == 0)

    def check(self, *, everything: bool) -> None:
        cloudflow_side = self.steps % 2 == 0  # read through each dialect in turn
        if cloudflow_side:
            body = check_cloudflow(self.target.cloudflow("ListFlows", Limit="1000"))
            listed = {f["Id"]: (f["Name"], f["Description"]) for f in body["Flows"]}
        else:
            answer = self.br("GET", "/flows/", query={"maxResults": "1000"})
            listed = {
                f["id"]: (f["name"], f.get("description", ""))
                for f in answer.json()["flowSummaries"]
            }
        expected = {f.id: (f.name, f.description) for f in self.flows.values()}
        assert listed == expected, f"flows: gateway {listed} != model {expected}"
        touched, self.touched = self.touched, set()
        for flow in self.flows.values():
            if not everything and flow.id not in touched:
                continue
            answer = self.br("GET", f"/flows/{flow.id}/versions", query={"maxResults": "1000"})
            versions = {int(v["version"]) for v in answer.json()["flowVersionSummaries"]}
            assert versions == flow.versions, f"{flow.name}: versions {versions} != {flow.versions}"
            if cloudflow_side:
                body = check_cloudflow(
                    self.target.cloudflow("ListFlowAliases", FlowName=flow.name, Limit="1000")
                )
                aliases: dict[str, Any] = {
                    a["Name"]: (
                        [(int(r["Version"]), r["Weight"]) for r in a["RoutingConfigurations"]],
                        a["Description"],
                    )
                    for a in body["Aliases"]
                }
                want: dict[str, Any] = {
                    a.name: (a.routes, a.description) for a in flow.aliases.values()
                }
            else:
                query = {"maxResults": "1000"}
                answer = self.br("GET", f"/flows/{flow.id}/aliases", query=query)
                aliases = {
                    a["name"]: (a["id"], [int(r["flowVersion"]) for r in a["routingConfiguration"]])
                    for a in answer.json()["flowAliasSummaries"]
                }
                want = {a.name: (a.id, [v for v, _ in a.routes]) for a in flow.aliases.values()}
            assert aliases == want, f"{flow.name}: aliases {aliases} != model {want}"

    def teardown(self) -> None:
        self.check(everything=True)
        report = self.target.walk(allow_dangling=True)
        dangling = {
            f"{f.name}/{a.name}->{v}"
            for f in self.flows.values()
            for a in f.aliases.values()
            for v, _ in a.routes
            if v not in f.versions
        }
        assert len(report.dangling) == len(dangling), (report.dangling, dangling)


def _run(target: Target, examples: int, steps: int) -> None:
    class Machine(GatewayModel):
        pass

    Machine.target = target
    settings = fuzz_settings(examples, stateful_step_count=steps)
    run_state_machine_as_test(Machine, settings=settings)  # type: ignore[no-untyped-call]


@pytest.mark.slow
def test_model_memory(memory_target: Target) -> None:
    _run(memory_target, examples=40, steps=30)


def test_model_redis(redis_target: Target) -> None:
    _run(redis_target, examples=10, steps=30)


# -- random requests of both dialects on Redis, then the store and its keys ----------------

_ANY_ACTION = st.sampled_from(sorted(cloudflow.ACTIONS))
_ANY_ROUTE = st.sampled_from(list(bedrock.ROUTES))


@st.composite
def _mixed(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(cloudflow_request(draw(_ANY_ACTION)))
    method, pattern, operation = draw(_ANY_ROUTE)
    return draw(bedrock_request(method, tuple(pattern), operation.name))


def test_mixed_fuzz_on_redis(redis_target: Target) -> None:
    seed = Seed(redis_target)

    @fuzz_settings(120)
    @given(request=_mixed())
    def run(request: Any) -> None:
        seed.ensure()
        if hasattr(request, "action"):
            check_cloudflow(send_cloudflow(redis_target, request))
        else:
            check_bedrock(send_bedrock(redis_target, request))

    run()
    report = redis_target.walk(allow_dangling=True)
    assert report.flows >= 3 and report.keys > 0, report
