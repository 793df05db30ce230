"""Hypothesis strategies for bad input to both dialects.

Values mix the valid-looking (names of the seeded flows and aliases, versions
"1" and "2", well-formed routing entries) with the malformed: empty, huge,
unicode and control characters, NUL, numbers as text (unicode digits
included), JSON of the wrong shape, type or depth, bogus page tokens. A
generated request is plain data (``CfRequest``, ``BrRequest``); references to
seeded resources whose ids are only known at run time (``Ref``) and fresh
client tokens (``FRESH``) are resolved when the request is sent.

``KNOWN_BUGS`` names the inputs that currently make the gateway fail. Each one
has a strict-xfail reproduction in the test modules; the strategies leave those
inputs out so the fuzz run stays green in CI. Delete an entry once its bug is
fixed and the fuzzer covers that input again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from router.model import MAX_WEIGHT

KNOWN_BUGS: frozenset[str] = frozenset()  # every bug the fuzzer found so far is fixed

# -- the seeded resources (harness.Seed creates them) ----------------------------------------

CF_FLOW, CF_EMPTY_FLOW, BR_FLOW = "f1", "f2", "b1"
CF_ALIASES = ("prod", "canary")  # f1: prod 1:30/2:70, canary 2:1
BR_ALIAS = "live"  # b1: live -> 1
ROLE = "arn:aws:iam::123456789012:role/flows"
REGION, ACCOUNT = "us-east-1", "123456789012"
MISSING_ID = "ZZZZZZZZZ0"
TEST_ALIAS = "TSTALIASID"
DEFINITION: dict[str, Any] = {"nodes": [], "connections": []}


@dataclass(frozen=True)
class Ref:
    """A seeded resource named by id or ARN, resolved when the request is sent."""

    kind: str  # flow | flow_arn | alias | alias_arn | execution_arn
    flow: str = BR_FLOW
    alias: str = BR_ALIAS
    region: str = REGION
    account: str = ACCOUNT


class _Fresh:
    """A clientToken no earlier request used (a reused token can wait up to 3 s)."""

    def __repr__(self) -> str:
        return "FRESH"


FRESH = _Fresh()


@dataclass(frozen=True)
class RawJson:
    """JSON text spliced into a body as it is (too deep for the json module to build)."""

    text: str


# -- text ------------------------------------------------------------------------------------

UNICODE = st.characters(codec="utf-8")  # every encodable code point: NUL, controls, astral
SPECIAL = (
    "",
    " ",
    "\x00",
    "\r\n",
    "\t",
    "%",
    "%00",
    "%ZZ",
    "&",
    "=",
    "+",
    "?",
    "#",
    "/",
    "../..",
    "null",
    "true",
    "[]",
    "{}",
    "'",
    '"',
    "\\",
    "é",
    "\u202e",
    "\ufeff",
    "\ufffd",
    "😀",
    "ß" * 3,
    "İ",
)
SPECIAL_TEXT = st.sampled_from(SPECIAL)
SHORT_TEXT = st.text(UNICODE, max_size=24)
HUGE_TEXT = st.builds(
    lambda char, n: char * n,
    st.sampled_from(["a", "é", "😀", "%", "\x00", "-"]),
    st.sampled_from([129, 257, 2049, 70_000]),
)
# Still inside the body limit once percent-encoded (9 bytes per character at most).
LARGE_TEXT = st.builds(lambda n: "x" * n, st.sampled_from([100_000, 900_000]))
GARBAGE = st.one_of(SHORT_TEXT, SHORT_TEXT, SPECIAL_TEXT, SPECIAL_TEXT, HUGE_TEXT)
# Numbers as text, including what str.isdigit() accepts and int() does not (superscript
# two, Arabic-Indic and N'Ko digits, a Roman numeral).
DIGITS = st.sampled_from(
    [
        *("0", "1", "2", "3", "-1", "+1", " 1", "1 ", "01", "1.0", "1e3", "0x10", "1_0"),
        *("99999", "100000", "2147483648", "9" * 30, "9" * 5000, "NaN"),
        *("\u0661", "\u0661\u0662", "\u00b2", "\u07c1", "\u216b"),
    ]
)

# -- JSON --------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    SHORT_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SHORT_TEXT, inner, max_size=4),
    max_leaves=10,
)

# Around the gateway's own limit (model.MAX_JSON_DEPTH, 64), around orjson's encoding
# limit (254: deeper documents parsed but could not be encoded again, a 500 until the
# depth check; "deep-json" while it was open) and past orjson's parsing limit (1024).
_SHALLOW_DEPTHS = [1, 2, 10, 63, 64, 65, 72, 73, 200]
_DEEP_DEPTHS = [253, 254, 255, 256, 300, 1000, 1023, 1024]
_REFUSED_DEPTHS = [1025, 1100, 100_000]
DEPTHS = _SHALLOW_DEPTHS + _REFUSED_DEPTHS + ([] if "deep-json" in KNOWN_BUGS else _DEEP_DEPTHS)


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


DEEP_JSON = st.builds(nested, st.sampled_from(DEPTHS), st.sampled_from(["list", "object"]))
# Text that is not quite JSON: escaped lone surrogates, truncations, JS-isms.
BROKEN_JSON = st.sampled_from(
    [
        '"\\ud800"',
        '["\\udfff"]',
        '[{"Version":"\\ud83d","Weight":1}]',
        '{"a":"\\u0000"}',
        "[",
        "[{",
        '[{"Version":"1","Weight":1}',
        "[{'Version':'1','Weight':1}]",
        "NaN",
        "Infinity",
        "[1,]",
        "{,}",
        "\x00",
        "[]garbage",
        "\ufeff[]",
        "1" * 5000,
        "-" * 3,
    ]
)


def json_text(values: st.SearchStrategy[Any] = JSON_VALUES) -> st.SearchStrategy[str]:
    return st.one_of(values.map(json.dumps), BROKEN_JSON, DEEP_JSON, SHORT_TEXT)


# -- CloudFlow ---------------------------------------------------------------------------------

CF_FLOW_NAMES = st.one_of(
    st.sampled_from([CF_FLOW, CF_EMPTY_FLOW, BR_FLOW, "missing", "F1", "f1 ", "_f", "9x"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,20}", fullmatch=True),
    GARBAGE,
)
CF_ALIAS_NAMES = st.one_of(
    st.sampled_from([*CF_ALIASES, BR_ALIAS, "new", "other", "1", "12", "DRAFT", TEST_ALIAS]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,20}", fullmatch=True),
    GARBAGE,
)
CF_VERSIONS = st.one_of(DIGITS, GARBAGE)
_VERSION_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        ["1", "2", "3", "0", "-1", "01", "99999", "100000", "DRAFT", "", "\u00b2", " 1"]
    ),
    st.integers(-3, 100_001),
    st.sampled_from([None, True, 1.0, [], {}, ["1"]]),
    SHORT_TEXT,
)
_WEIGHT_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([0, 1, 30, 70, 100, -1, MAX_WEIGHT, MAX_WEIGHT + 1, 2**63, 2**64]),
    st.sampled_from(["30", None, True, False, 1.5, 30.0, [], {}]),
    st.integers(),
)
_ROUTE_ENTRY = st.fixed_dictionaries(
    {},
    optional={"Version": _VERSION_VALUES, "Weight": _WEIGHT_VALUES, "Extra": JSON_SCALARS},
)
_PLAUSIBLE_ROUTES = st.lists(
    st.fixed_dictionaries(
        {"Version": st.sampled_from(["1", "2", "3"]), "Weight": st.integers(0, 100)}
    ),
    min_size=1,
    max_size=3,
)
CF_ROUTES = st.one_of(
    _PLAUSIBLE_ROUTES.map(json.dumps),
    st.lists(_ROUTE_ENTRY, max_size=4).map(json.dumps),
    json_text(),
)
CF_LIMITS = st.one_of(DIGITS, st.integers(-5, 1005).map(str), GARBAGE)
CF_TOKENS = st.one_of(
    st.sampled_from([CF_FLOW, CF_EMPTY_FLOW, "prod", "1", "2", "0", "-1", "zzz", "\u00b2", "\x00"]),
    GARBAGE,
)
CF_FLAGS = st.one_of(st.sampled_from(["true", "false", "TRUE", "False", "1", "yes", ""]), GARBAGE)
CF_EXECUTIONS = st.one_of(
    st.sampled_from(["e1", "e2", "-e", "e.1", "a" * 128, "a" * 129]),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,30}", fullmatch=True),
    # The form of a generated name, ``<32 hex>.<version>.<alias>``, with odd parts.
    st.builds(
        lambda version, alias: f"{'0' * 32}.{version}.{alias}",
        st.one_of(DIGITS, SHORT_TEXT),
        st.one_of(st.sampled_from(CF_ALIASES), SHORT_TEXT),
    ),
    GARBAGE,
)
CF_QUALIFIERS = st.one_of(
    st.sampled_from([*CF_ALIASES, "1", "2", "3", "missing", "DRAFT", TEST_ALIAS]), DIGITS, GARBAGE
)
CF_DEFINITIONS = st.one_of(
    st.sampled_from(["version: v1\ntype: flow\nsteps: []", '{"nodes": []}']), GARBAGE, LARGE_TEXT
)
CF_DESCRIPTIONS = st.one_of(
    st.text(UNICODE, max_size=300), st.sampled_from(["d" * 256, "d" * 257]), GARBAGE
)

CF_KINDS: Mapping[str, st.SearchStrategy[str]] = {
    "flow": CF_FLOW_NAMES,
    "alias": CF_ALIAS_NAMES,
    "version": CF_VERSIONS,
    "limit": CF_LIMITS,
    "token": CF_TOKENS,
    "routes": CF_ROUTES,
    "json": json_text(),
    "input": json_text(),
    "definition": CF_DEFINITIONS,
    "description": CF_DESCRIPTIONS,
    "flag": CF_FLAGS,
    "execution": CF_EXECUTIONS,
    "qualifier": CF_QUALIFIERS,
    "text": GARBAGE,
    "wait": CF_LIMITS,
}

# Values a well-behaved client would send, aimed at the seeded resources.
_NEW_NAMES = st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True)
CF_PLAUSIBLE: Mapping[str, st.SearchStrategy[str]] = {
    "flow": st.sampled_from([CF_FLOW, CF_FLOW, CF_EMPTY_FLOW, BR_FLOW]),
    "alias": st.one_of(st.sampled_from([*CF_ALIASES, BR_ALIAS]), _NEW_NAMES),
    "version": st.sampled_from(["1", "2", "3"]),
    "limit": st.sampled_from(["1", "2", "10", "1000"]),
    "token": st.sampled_from([CF_FLOW, CF_EMPTY_FLOW, "canary", "prod", "1", "2"]),
    "routes": _PLAUSIBLE_ROUTES.map(json.dumps),
    "json": st.sampled_from(['{"Variables": []}', "{}", '{"Variables": [{"Name": "a"}]}']),
    "input": JSON_VALUES.map(json.dumps),
    "definition": st.sampled_from(["version: v1\ntype: flow\nsteps: []"]),
    "description": st.text(st.characters(codec="ascii", min_codepoint=32), max_size=40),
    "flag": st.sampled_from(["true", "false"]),
    "execution": st.one_of(st.just("e1"), _NEW_NAMES),
    "qualifier": st.sampled_from([*CF_ALIASES, "1", "2"]),
    "text": st.sampled_from(["x", "FDL", "Standard", "rg-1"]),
    "wait": st.sampled_from(["0", "1"]),
}

# The business parameters of every Action (docs/wire.md §2.4), with what kind of value each is.
CF_PARAMS: Mapping[str, Sequence[tuple[str, str]]] = {
    "CreateFlow": [
        ("Name", "flow"),
        ("Definition", "definition"),
        ("Description", "description"),
        ("Type", "text"),
        ("RoleArn", "text"),
        ("ExecutionMode", "text"),
        ("Environment", "json"),
        ("ExternalStorageLocation", "text"),
        ("ResourceGroupId", "text"),
    ],
    "DescribeFlow": [("Name", "flow"), ("FlowVersion", "version")],
    "ListFlows": [("Limit", "limit"), ("NextToken", "token"), ("ResourceGroupId", "text")],
    "UpdateFlow": [
        ("Name", "flow"),
        ("Definition", "definition"),
        ("Description", "description"),
        ("Type", "text"),
        ("RoleArn", "text"),
        ("ExecutionMode", "text"),
        ("Environment", "json"),
    ],
    "DeleteFlow": [("Name", "flow")],
    "PublishFlowVersion": [("FlowName", "flow"), ("Description", "description")],
    "ListFlowVersions": [("FlowName", "flow"), ("Limit", "limit"), ("NextToken", "token")],
    "DeleteFlowVersion": [("FlowName", "flow"), ("FlowVersion", "version")],
    "CreateFlowAlias": [
        ("FlowName", "flow"),
        ("Name", "alias"),
        ("RoutingConfigurations", "routes"),
        ("Description", "description"),
        ("StickyExecutionName", "flag"),
    ],
    "DescribeFlowAlias": [("FlowName", "flow"), ("Name", "alias")],
    "ListFlowAliases": [("FlowName", "flow"), ("Limit", "limit"), ("NextToken", "token")],
    "UpdateFlowAlias": [
        ("FlowName", "flow"),
        ("Name", "alias"),
        ("RoutingConfigurations", "routes"),
        ("Description", "description"),
        ("StickyExecutionName", "flag"),
    ],
    "DeleteFlowAlias": [("FlowName", "flow"), ("Name", "alias")],
    "StartExecution": [
        ("FlowName", "flow"),
        ("Qualifier", "qualifier"),
        ("ExecutionName", "execution"),
        ("Input", "input"),
        ("CallbackFnFTaskToken", "text"),
    ],
    "DescribeExecution": [
        ("FlowName", "flow"),
        ("ExecutionName", "execution"),
        ("WaitTimeSeconds", "wait"),
    ],
    "StopExecution": [
        ("FlowName", "flow"),
        ("ExecutionName", "execution"),
        ("Error", "text"),
        ("Cause", "text"),
    ],
    "ListExecutions": [
        ("FlowName", "flow"),
        ("Status", "text"),
        ("Qualifier", "qualifier"),
        ("ExecutionNamePrefix", "execution"),
        ("StartedTimeBegin", "text"),
        ("StartedTimeEnd", "text"),
        ("Limit", "limit"),
        ("NextToken", "token"),
        ("MetadataOnly", "flag"),
    ],
    "GetExecutionHistory": [
        ("FlowName", "flow"),
        ("ExecutionName", "execution"),
        ("Limit", "limit"),
        ("NextToken", "token"),
    ],
    "StartSyncExecution": [
        ("FlowName", "flow"),
        ("Qualifier", "qualifier"),
        ("ExecutionName", "execution"),
        ("Input", "input"),
    ],
}
CF_GET_ACTIONS = frozenset(
    {
        "DescribeFlow",
        "ListFlows",
        "ListFlowVersions",
        "DescribeFlowAlias",
        "ListFlowAliases",
        "DescribeExecution",
        "ListExecutions",
        "GetExecutionHistory",
    }
)
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = st.sampled_from(
    [
        FORM,
        FORM + "; charset=utf-8",
        FORM + "; charset=latin-1",
        "APPLICATION/X-WWW-FORM-URLENCODED",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "",
        "\x7f",
    ]
)
# Header values must stay one line of latin-1 for HTTP/1.1 to carry them.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=30
)


@dataclass(frozen=True)
class CfRequest:
    """One CloudFlow RPC request, as data."""

    method: str
    action: str | None  # the Action query parameter (None: absent)
    header_action: str | None  # x-acs-action
    params: tuple[tuple[str, str], ...]
    placement: str  # query | form | both | split
    content_type: str | None
    raw_body: bytes | None = None  # sent instead of the encoded form

    def encode(self) -> tuple[str, str, bytes, list[tuple[str, str | bytes]]]:
        common: list[tuple[str, str]] = [("Format", "json"), ("Version", "2019-03-15")]
        if self.action is not None:
            common.insert(0, ("Action", self.action))
        query: list[tuple[str, str]] = list(common)
        form: list[tuple[str, str]] = []
        for i, pair in enumerate(self.params):
            if self.placement == "query":
                query.append(pair)
            elif self.placement == "form":
                form.append(pair)
            elif self.placement == "both":
                query.append(pair)
                form.append(pair)
            else:  # split: alternate, so a parameter may sit in either place
                (query if i % 2 else form).append(pair)
        target = "/?" + urlencode(query, quote_via=quote)
        body = self.raw_body if self.raw_body is not None else urlencode(form).encode()
        headers: list[tuple[str, str | bytes]] = []
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type.encode("latin-1")))
        if self.header_action is not None:
            headers.append(("x-acs-action", self.header_action.encode("latin-1")))
        headers.append(("x-acs-version", "2019-03-15"))
        return self.method, target, body, headers


@functools.cache
def cf_params(action: str) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Each known parameter absent or drawn from its kind; sometimes extras or duplicates."""
    spec = CF_PARAMS.get(action, [(name, "text") for name in ("Name", "FlowName")])

    @st.composite
    def build(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
        # Hypothesis starts from the simplest choices (False, 0, the first element), so
        # the simplest request is the plausible one and breakage is what it explores.
        params: list[tuple[str, str]] = []
        if not draw(st.booleans()):  # a request that would work but for one broken thing
            params.extend((name, draw(CF_PLAUSIBLE[kind])) for name, kind in spec)
            broken = draw(st.sampled_from([None, *range(len(params))]))
            if broken is not None:
                name, kind = spec[broken]
                how = draw(st.sampled_from(["absent", "empty", "malformed", "malformed"]))
                if how == "absent":
                    del params[broken]
                else:
                    params[broken] = (name, "" if how == "empty" else draw(CF_KINDS[kind]))
            return tuple(params)
        for name, kind in spec:
            choice = draw(st.sampled_from(["value", "value", "value", "absent", "empty", "other"]))
            if choice == "value":
                params.append((name, draw(CF_KINDS[kind])))
            elif choice == "empty":
                params.append((name, ""))
            elif choice == "other":  # a value meant for another parameter
                params.append((name, draw(draw(st.sampled_from(list(CF_KINDS.values()))))))
        duplicate: bool = draw(st.booleans())
        if params and duplicate:  # a parameter twice, the second time with another value
            name, _ = draw(st.sampled_from(params))
            params.append((name, draw(GARBAGE)))
        extras = draw(st.lists(st.tuples(SHORT_TEXT, GARBAGE), max_size=2))
        params.extend(extras)
        return tuple(params)

    return build()


@st.composite
def cloudflow_request(draw: st.DrawFn, action: str | None) -> CfRequest:
    """A request for ``action`` (``None``: any action name, or none)."""
    if action is None:
        name = draw(
            st.one_of(
                st.none(),
                st.sampled_from(["", "createflow", "CREATEFLOW", "Describe", "ListFlows "]),
                HEADER_TEXT,
            )
        )
        params = draw(cf_params(draw(st.sampled_from(sorted(CF_PARAMS)))))
    else:
        name = action
        params = draw(cf_params(action))
    usual = "GET" if action in CF_GET_ACTIONS else "POST"
    if action is not None and draw(st.integers(0, 3)) < 3:  # the transport as the SDK uses it
        placement = "query" if usual == "GET" else "form"
        return CfRequest(usual, name, action, params, placement, FORM)
    method = draw(st.sampled_from([usual, usual, usual, "GET", "POST"]))
    where = draw(st.sampled_from(["query", "header", "header", "both", "conflict"]))
    query_action = name if where in ("query", "both", "conflict") else None
    header_action: str | None = None
    if where in ("header", "both") and name is not None:
        header_action = name.encode("latin-1", "replace").decode("latin-1")
        header_action = header_action.replace("\r", "").replace("\n", "")
    elif where == "conflict":
        header_action = draw(st.sampled_from(sorted(CF_PARAMS)))
    if query_action is None and header_action is None and where == "query":
        query_action = None  # no Action anywhere: MissingRequiredParams
    usual_placement = "query" if method == "GET" else "form"
    placement = draw(st.sampled_from([usual_placement] * 4 + ["query", "form", "both", "split"]))
    content_type = draw(st.one_of(st.just(FORM), st.just(FORM), st.none(), CONTENT_TYPES))
    raw_body = None
    if method == "POST" and draw(st.integers(0, 9)) == 0:
        raw_body = draw(
            st.sampled_from(
                [
                    b"Name=\xff\xfe&FlowName=f1",  # not UTF-8
                    b"Name=%ff%fe",  # percent-encoded, not UTF-8 after decoding
                    b"\xc3\x28",
                    b"=&=&&&==",
                    b"Name",
                    b'{"Name": "f1"}',
                    b"\x00" * 64,
                    b"a=" + b"%" * 1000,
                ]
            )
        )
    return CfRequest(method, query_action, header_action, params, placement, content_type, raw_body)


# -- Bedrock -------------------------------------------------------------------------------------

FLOW_REFS = st.one_of(
    st.sampled_from(
        [
            Ref("flow"),
            Ref("flow"),
            Ref("flow_arn"),
            Ref("flow", flow=CF_FLOW),
            Ref("flow_arn", flow=CF_FLOW),
            Ref("flow_arn", region="eu-west-1"),
            Ref("flow_arn", account="000000000000"),
            Ref("alias_arn"),  # an alias ARN where a flow is expected
            MISSING_ID,
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{MISSING_ID}",
            "abcdefghij",
            "ABCDEFGHIJK",
            "DRAFT",
        ]
    ),
    GARBAGE,
)
ALIAS_REFS = st.one_of(
    st.sampled_from(
        [
            Ref("alias"),
            Ref("alias"),
            Ref("alias_arn"),
            Ref("alias", flow=CF_FLOW, alias="prod"),
            Ref("alias_arn", flow=CF_FLOW, alias="canary"),
            Ref("alias_arn", region="eu-west-1"),
            Ref("flow_arn"),  # a flow ARN where an alias is expected
            Ref("execution_arn"),
            TEST_ALIAS,
            MISSING_ID,
        ]
    ),
    GARBAGE,
)
VERSION_LABELS = st.one_of(
    st.sampled_from(["1", "2", "3", "DRAFT", "0", "99999", "100000"]), DIGITS, GARBAGE
)
EXECUTION_REFS = st.one_of(
    st.sampled_from([Ref("execution_arn"), "e1", "x" * 36, "x" * 37, "-", MISSING_ID]),
    st.from_regex(r"[a-zA-Z0-9-]{1,36}", fullmatch=True),
    GARBAGE,
)
RESOURCE_ARNS = st.one_of(
    st.sampled_from(
        [
            Ref("flow_arn"),
            Ref("flow_arn"),
            Ref("alias_arn"),
            Ref("alias_arn", flow=CF_FLOW, alias="prod"),
            Ref("execution_arn"),
            Ref("flow_arn", account="000000000000"),
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{MISSING_ID}",
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{MISSING_ID}/alias/{TEST_ALIAS}",
            Ref("flow"),
        ]
    ),
    GARBAGE,
)
LABELS: Mapping[str, st.SearchStrategy[Any]] = {
    "{flow}": FLOW_REFS,
    "{alias}": ALIAS_REFS,
    "{version}": VERSION_LABELS,
    "{execution}": EXECUTION_REFS,
    "{arn}": RESOURCE_ARNS,
}

PLAUSIBLE_LABELS: Mapping[str, st.SearchStrategy[Any]] = {
    "{flow}": st.sampled_from(
        [Ref("flow"), Ref("flow"), Ref("flow_arn"), Ref("flow", flow=CF_FLOW)]
    ),
    "{alias}": st.sampled_from(
        [Ref("alias"), Ref("alias"), Ref("alias_arn"), TEST_ALIAS, Ref("alias", CF_FLOW, "prod")]
    ),
    "{version}": st.sampled_from(["1", "2"]),
    "{execution}": st.sampled_from([Ref("execution_arn"), "e1"]),
    "{arn}": st.sampled_from([Ref("flow_arn"), Ref("alias_arn")]),
}

BR_NAMES = st.one_of(
    st.sampled_from([BR_FLOW, CF_FLOW, "new1", "New-flow_2", "x" * 100, "x" * 101, "1", "a--b"]),
    st.from_regex(r"(?:[0-9a-zA-Z][_-]?){1,12}", fullmatch=True),
    JSON_SCALARS,
    GARBAGE,
)
ROLE_ARNS = st.one_of(
    st.sampled_from(
        [
            ROLE,
            "arn:aws:iam::123456789012:role/service-role/x",
            "arn:aws-cn:iam::123456789012:role/x",
            "arn:aws:iam::role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/" + "r" * 2100,
        ]
    ),
    JSON_VALUES,
    GARBAGE,
)
KMS_ARNS = st.one_of(
    st.just("arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"),
    JSON_SCALARS,
    GARBAGE,
)
DESCRIPTIONS = st.one_of(
    st.text(UNICODE, max_size=220), st.sampled_from(["", "d" * 200, "d" * 201]), JSON_VALUES
)
DEFINITIONS = st.one_of(
    st.just(DEFINITION),
    st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=3),
    DEEP_JSON.map(RawJson),
    JSON_VALUES,
)
TAG_TEXT = st.one_of(
    st.from_regex(r"[a-zA-Z0-9 ._:/=+@-]{0,20}", fullmatch=True),
    st.sampled_from(["", "k" * 128, "k" * 129, "v" * 256, "v" * 257, "é", "\x00", "a\nb"]),
    SHORT_TEXT,
)
TAGS = st.one_of(st.dictionaries(TAG_TEXT, TAG_TEXT, max_size=4), JSON_VALUES)
CLIENT_TOKENS = st.one_of(
    st.just(FRESH),
    st.just(FRESH),
    st.sampled_from(["", "short", "a" * 32, "a" * 257, "-" + "a" * 40, "a" * 40 + "-", "a b" * 20]),
    st.sampled_from(["é" * 40, "a_" * 20, "a" * 39 + "\x00"]),
    st.integers(),
    st.sampled_from([None, True, [], {}]),
)
BR_ROUTING = st.one_of(
    st.lists(st.fixed_dictionaries({"flowVersion": st.sampled_from(["1", "2"])}), max_size=2),
    st.lists(
        st.fixed_dictionaries({}, optional={"flowVersion": _VERSION_VALUES, "x": JSON_SCALARS}),
        max_size=4,
    ),
    JSON_VALUES,
)


def _input(document: Any, node: Any = "FlowInputNode") -> list[dict[str, Any]]:
    return [{"nodeName": node, "nodeOutputName": "document", "content": {"document": document}}]


INPUTS = st.one_of(
    st.builds(_input, JSON_VALUES),
    st.builds(_input, DEEP_JSON.map(RawJson)),
    st.builds(_input, JSON_VALUES, st.one_of(JSON_SCALARS, GARBAGE)),
    st.lists(st.fixed_dictionaries({}, optional={"nodeName": JSON_VALUES, "content": JSON_VALUES})),
    st.builds(lambda one: [one, one], st.builds(_input, JSON_VALUES).map(lambda x: x[0])),
    JSON_VALUES,
)
EXECUTION_NAMES = st.one_of(
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,35}", fullmatch=True),
    st.sampled_from(["-x", "x" * 37, "e.1", "e_1", ""]),
    JSON_SCALARS,
    GARBAGE,
)

BR_MEMBERS: Mapping[str, st.SearchStrategy[Any]] = {
    "name": BR_NAMES,
    "executionRoleArn": ROLE_ARNS,
    "description": DESCRIPTIONS,
    "customerEncryptionKeyArn": KMS_ARNS,
    "definition": DEFINITIONS,
    "tags": TAGS,
    "clientToken": CLIENT_TOKENS,
    "routingConfiguration": BR_ROUTING,
    "concurrencyConfiguration": JSON_VALUES,
    "inputs": INPUTS,
    "executionId": EXECUTION_NAMES,
    "flowExecutionName": EXECUTION_NAMES,
    "enableTrace": JSON_VALUES,
    "modelPerformanceConfiguration": JSON_VALUES,
}
_BR_NEW_NAMES = st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True)
BR_PLAUSIBLE: Mapping[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.just(BR_FLOW), _BR_NEW_NAMES),
    "executionRoleArn": st.just(ROLE),
    "description": st.text(st.characters(codec="ascii", min_codepoint=32), min_size=1, max_size=40),
    "customerEncryptionKeyArn": KMS_ARNS.filter(lambda v: isinstance(v, str) and "kms" in v),
    "definition": st.just(DEFINITION),
    "tags": st.dictionaries(st.sampled_from(["team", "env"]), st.sampled_from(["a", "b"])),
    "clientToken": st.just(FRESH),
    "routingConfiguration": st.sampled_from([[{"flowVersion": "1"}], [{"flowVersion": "2"}]]),
    "concurrencyConfiguration": st.just({"type": "Automatic"}),
    "inputs": st.builds(_input, JSON_VALUES),
    "executionId": _BR_NEW_NAMES,
    "flowExecutionName": st.one_of(st.just("e1"), _BR_NEW_NAMES),
    "enableTrace": st.booleans(),
    "modelPerformanceConfiguration": st.just({"performanceConfig": {"latency": "standard"}}),
}
_REQUIRED = frozenset({"name", "executionRoleArn", "routingConfiguration", "inputs", "tags"})

# The JSON members of every operation with a body (botocore's request shapes).
BR_BODIES: Mapping[str, Sequence[str]] = {
    "CreateFlow": [
        "name",
        "executionRoleArn",
        "description",
        "customerEncryptionKeyArn",
        "definition",
        "tags",
        "clientToken",
    ],
    "UpdateFlow": [
        "name",
        "executionRoleArn",
        "description",
        "customerEncryptionKeyArn",
        "definition",
    ],
    "PrepareFlow": [],
    "CreateFlowVersion": ["description", "clientToken"],
    "CreateFlowAlias": [
        "name",
        "description",
        "routingConfiguration",
        "concurrencyConfiguration",
        "tags",
        "clientToken",
    ],
    "UpdateFlowAlias": ["name", "description", "routingConfiguration", "concurrencyConfiguration"],
    "TagResource": ["tags"],
    "InvokeFlow": ["inputs", "executionId", "enableTrace", "modelPerformanceConfiguration"],
    "StartFlowExecution": ["inputs", "flowExecutionName", "modelPerformanceConfiguration"],
    "StopFlowExecution": [],
}


def _int_parses(text: str) -> bool:
    """What validate_max_results survives while "max-results-int" is a known bug."""
    if "max-results-int" not in KNOWN_BUGS or not text.isdigit():
        return True
    return len(text) <= 4300


_MAX_RESULTS = st.one_of(
    st.sampled_from(["1", "2", "1000", "1001", "0", "-1", "", "1.5", "9" * 5000]),
    st.integers(-2, 1002).map(str),
    DIGITS,
    GARBAGE,
).filter(_int_parses)
_PLAUSIBLE_QUERIES: Mapping[str, st.SearchStrategy[str]] = {
    "maxResults": st.sampled_from(["1", "2", "10"]),
    "nextToken": st.sampled_from(["1", "2", "live", "b1", "e1"]),
    "skipResourceInUseCheck": st.sampled_from(["true", "false"]),
    "tagKeys": st.sampled_from(["team", "env"]),
}
_NEXT_TOKENS = st.one_of(st.sampled_from(["1", "2", "live", "b1", "", "zzz", "\x00"]), GARBAGE)
_SKIP = st.one_of(st.sampled_from(["true", "false", "True", "1", ""]), GARBAGE)
BR_QUERIES: Mapping[str, Sequence[tuple[str, st.SearchStrategy[Any]]]] = {
    "ListFlows": [("maxResults", _MAX_RESULTS), ("nextToken", _NEXT_TOKENS)],
    "ListFlowVersions": [("maxResults", _MAX_RESULTS), ("nextToken", _NEXT_TOKENS)],
    "ListFlowAliases": [("maxResults", _MAX_RESULTS), ("nextToken", _NEXT_TOKENS)],
    "ListFlowExecutions": [
        ("maxResults", _MAX_RESULTS),
        ("nextToken", _NEXT_TOKENS),
        ("flowAliasIdentifier", ALIAS_REFS),
    ],
    "DeleteFlow": [("skipResourceInUseCheck", _SKIP)],
    "DeleteFlowVersion": [("skipResourceInUseCheck", _SKIP)],
    "UntagResource": [("tagKeys", TAG_TEXT), ("tagKeys", TAG_TEXT), ("tagKeys", TAG_TEXT)],
}


@dataclass(frozen=True)
class BrRequest:
    """One Bedrock REST request, as data; ``Ref`` and ``FRESH`` resolve when sent."""

    method: str
    segments: tuple[Any, ...]  # after the leading "/": literals, labels, Refs
    encoding: str  # how labels are written: quote | colon | raw | utf8
    query: tuple[tuple[str, Any], ...] = ()
    body: Any = None  # a JSON value (dumped), or bytes sent as they are
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@functools.cache
def _mutate_literal(segment: str) -> st.SearchStrategy[str]:
    return st.sampled_from([segment, segment, segment, segment.upper(), segment + "x", ""])


@st.composite
def bedrock_request(
    draw: st.DrawFn, method: str, pattern: Sequence[str], operation: str
) -> BrRequest:
    """A request shaped like ``method /pattern`` for ``operation``: half of them would work
    but for at most one broken member, half are malformed throughout."""
    if not draw(st.booleans()):  # the simplest choice: see cf_params
        return draw(_plausible_request(method, tuple(pattern), operation))
    segments: list[Any] = []
    for i, part in enumerate(pattern):
        if part in LABELS:
            segments.append(draw(LABELS[part]))
        # Now and then a route that almost matches; the root ("flows", "tags") stays, or
        # the path would leave the dialect's path space.
        elif i > 0 and draw(st.integers(0, 19)) == 0:
            segments.append(draw(_mutate_literal(part)))
        else:
            segments.append(part)
    if draw(st.integers(0, 19)) == 0:
        segments.append(draw(st.sampled_from(["", "x", "versions", "aliases"])))
    if draw(st.integers(0, 29)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    encoding = draw(st.sampled_from(["quote"] * 5 + ["colon", "raw", "utf8"]))
    query: list[tuple[str, Any]] = []
    for name, values in BR_QUERIES.get(operation, []):
        if draw(st.booleans()):
            query.append((name, draw(values)))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(SHORT_TEXT), draw(GARBAGE)))
    body: Any = None
    members = BR_BODIES.get(operation)
    if members is not None or method in ("POST", "PUT"):
        body = draw(_body(tuple(members or ())))
    content_type = draw(
        st.sampled_from(
            ["application/json"] * 6 + [None, "text/plain", FORM, "application/x-amz-json-1.1"]
        )
    )
    return BrRequest(method, tuple(segments), encoding, tuple(query), body, content_type)


@functools.cache
def _plausible_request(
    method: str, pattern: tuple[str, ...], operation: str
) -> st.SearchStrategy[BrRequest]:
    members = tuple(BR_BODIES.get(operation, ()))
    queries = BR_QUERIES.get(operation, [])

    @st.composite
    def build(draw: st.DrawFn) -> BrRequest:
        segments = [draw(PLAUSIBLE_LABELS[p]) if p in PLAUSIBLE_LABELS else p for p in pattern]
        query = [
            (name, draw(_PLAUSIBLE_QUERIES.get(name, st.just("x"))))
            for name, _ in queries
            if draw(st.booleans())
        ]
        body: dict[str, Any] | None = None
        if members or method in ("POST", "PUT"):
            body = {
                name: draw(BR_PLAUSIBLE[name])
                for name in members
                if name in _REQUIRED or draw(st.booleans())
            }
        # At most one thing broken: a label, a query value or a member.
        where = draw(st.sampled_from(["nothing", "label", "query", "member", "member"]))
        labels = [i for i, p in enumerate(pattern) if p in LABELS]
        if where == "label" and labels:
            i = draw(st.sampled_from(labels))
            segments[i] = draw(LABELS[pattern[i]])
        elif where == "query" and queries:
            name, values = draw(st.sampled_from(list(queries)))
            query.append((name, draw(values)))
        elif where == "member" and members and body is not None:
            name = draw(st.sampled_from(members))
            if draw(st.booleans()) and name in body:
                del body[name]
            else:
                body[name] = draw(BR_MEMBERS[name])
        return BrRequest(method, tuple(segments), "quote", tuple(query), body)

    return build()


@functools.cache
def _body(members: tuple[str, ...]) -> st.SearchStrategy[Any]:
    mostly_present = st.fixed_dictionaries(
        {name: BR_MEMBERS[name] for name in members[:2]},
        optional={name: BR_MEMBERS[name] for name in members[2:]},
    )
    any_subset = st.fixed_dictionaries({}, optional={name: BR_MEMBERS[name] for name in members})
    with_extras = st.builds(
        lambda body, extra: {**extra, **body},
        any_subset,
        st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=3),
    )
    raw = st.sampled_from(
        [
            b"",
            b" ",
            b"null",
            b"[]",
            b'"text"',
            b"42",
            b"{",
            b'{"name": "x",}',
            b"\xff\xfe{}",
            b'{"name": "\xff"}',
            b"\x00",
            b'{"name": "x"}{"name": "y"}',
            b'{"name": "a", "name": "b"}',
            b"\xef\xbb\xbf{}",
            b"{}" + b" " * 2_000_000,  # over the body limit
            b'{"a": "' + b"x" * 1_100_000 + b'"}',
        ]
    )
    deep = DEEP_JSON.map(str.encode)
    return st.one_of(
        mostly_present,
        mostly_present,
        mostly_present,
        any_subset,
        with_extras,
        raw,
        deep,
        JSON_VALUES,
    )


def _ref_text(ref: Ref, ids: Callable[[str, str | None], str]) -> str:
    base = f"arn:aws:bedrock:{ref.region}:{ref.account}:flow/{ids(ref.flow, None)}"
    if ref.kind == "flow":
        return ids(ref.flow, None)
    if ref.kind == "flow_arn":
        return base
    if ref.kind == "alias":
        return ids(ref.flow, ref.alias)
    alias_arn = f"{base}/alias/{ids(ref.flow, ref.alias)}"
    if ref.kind == "alias_arn":
        return alias_arn
    return f"{alias_arn}/execution/e1"


def resolve(
    value: Any,
    ids: Callable[[str, str | None], str],
    fresh: Callable[[], str],
    raw: dict[str, str] | None = None,
) -> Any:
    """``value`` with every ``Ref`` replaced by its text, every ``FRESH`` by a new token,
    and every ``RawJson`` by a placeholder string (recorded in ``raw``)."""
    if isinstance(value, Ref):
        return _ref_text(value, ids)
    if value is FRESH:
        return fresh()
    if isinstance(value, RawJson):
        if raw is None:
            return value.text
        placeholder = f"@@raw-json-{len(raw)}@@"
        raw[placeholder] = value.text
        return placeholder
    if isinstance(value, dict):
        return {k: resolve(v, ids, fresh, raw) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, fresh, raw) for v in value]
    return value


def dump_body(value: Any, ids: Callable[[str, str | None], str], fresh: Callable[[], str]) -> bytes:
    raw: dict[str, str] = {}
    text = json.dumps(resolve(value, ids, fresh, raw))
    for placeholder, spliced in raw.items():
        text = text.replace(json.dumps(placeholder), spliced, 1)
    return text.encode()


def encode_segment(label: str, encoding: str) -> bytes:
    if encoding == "quote":
        return quote(label, safe="").encode()
    if encoding == "colon":  # botocore leaves ':' alone in some versions
        return quote(label, safe=":").encode()
    if encoding == "raw":  # '/' splits the label: a different shape
        return quote(label, safe="/:").encode()
    # Non-ASCII as raw UTF-8 bytes in the request target (not valid in a URI, but sent).
    return "".join(c if ord(c) > 0x7F else quote(c, safe="") for c in label).encode()


def encode_bedrock(
    request: BrRequest, ids: Callable[[str, str | None], str], fresh: Callable[[], str]
) -> tuple[str, bytes, bytes, list[tuple[str, str | bytes]]]:
    parts = [
        encode_segment(str(resolve(s, ids, fresh)), request.encoding) for s in request.segments
    ]
    target = b"/" + b"/".join(parts)
    if request.query:
        query = [(k, str(resolve(v, ids, fresh))) for k, v in request.query]
        target += b"?" + urlencode(query, quote_via=quote).encode()
    headers: list[tuple[str, str | bytes]] = []
    if request.content_type is not None:
        headers.append(("Content-Type", request.content_type))
    body = b""
    if isinstance(request.body, bytes):
        body = request.body
    elif request.body is not None:
        body = dump_body(request.body, ids, fresh)
    return request.method, target, body, headers


def newline_in_path(target: bytes) -> bool:
    """aiohttp's ``{tail:.*}`` does not match a decoded newline: see KNOWN_BUGS."""
    path = target.split(b"?", 1)[0]
    return b"\n" in path or b"%0a" in path.lower()
