"""Tests of the shared model's values and validators (router/model.py).

``MissingParameter`` subclasses ``InvalidArgument``, so where a value is present
but wrong the tests check ``type(exc) is InvalidArgument``: a dialect maps the two
to different error codes.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InvalidArgument, MissingParameter
from router.model import (
    MAX_WEIGHT,
    Alias,
    Api,
    Flow,
    FlowUpdate,
    Route,
    parse_version,
    validate_alias_name,
    validate_description,
    validate_execution_name,
    validate_name,
    validate_routes,
)

CLOUDFLOW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
BEDROCK_NAME = re.compile(r"([0-9a-zA-Z][_-]?){1,100}")
NAME_PATTERNS = {Api.CLOUDFLOW: CLOUDFLOW_NAME, Api.BEDROCK: BEDROCK_NAME}


def _invalid(exc: pytest.ExceptionInfo[InvalidArgument], field: str) -> None:
    """The error is InvalidArgument proper (not MissingParameter) and names ``field``."""
    assert type(exc.value) is InvalidArgument
    assert exc.value.field == field
    assert exc.value.message


# -- validate_name -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "_", "_x", "A1", "my-flow_2", "flow-", "a--b", "x" * 128, "_" + "-" * 127],
)
def test_cloudflow_name_accepted(name: str) -> None:
    assert validate_name(name, Api.CLOUDFLOW) == name


@pytest.mark.parametrize(
    "name",
    [
        "1abc",
        "-abc",
        "9",
        "x" * 129,
        "flów",
        "名前",
        "bad name!",
        "has space",
        " lead",
        "trail ",
        "trail\n",
        "a.b",
        "a/b",
        "\uff41bc",  # fullwidth letter a
    ],
)
def test_cloudflow_name_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_name(name, Api.CLOUDFLOW, "FlowName")
    _invalid(exc, "FlowName")


@pytest.mark.parametrize(
    "name",
    ["a", "1", "007", "a-b_c", "flow-1", "a-", "a_", "A1b2", "a" * 100, "a-" * 100, "1_" * 100],
)
def test_bedrock_name_accepted(name: str) -> None:
    assert validate_name(name, Api.BEDROCK) == name


@pytest.mark.parametrize(
    "name",
    [
        "a--b",
        "a__b",
        "a_-b",
        "-a",
        "_a",
        "-",
        "a" * 101,
        "a-" * 100 + "a",
        "x" * 129,
        "flów",
        "名前",
        "bad name!",
        "a b",
        "a.b",
        "a\n",
    ],
)
def test_bedrock_name_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_name(name, Api.BEDROCK, "flowName")
    _invalid(exc, "flowName")


@pytest.mark.parametrize("api", list(Api))
@pytest.mark.parametrize("name", ["", None])
def test_name_missing(api: Api, name: str | None) -> None:
    with pytest.raises(MissingParameter) as exc:
        validate_name(name, api, "FlowName")
    assert exc.value.field == "FlowName"


def test_name_default_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_name("bad name!", Api.CLOUDFLOW)
    _invalid(exc, "name")


@given(st.from_regex(CLOUDFLOW_NAME, fullmatch=True))
@settings(max_examples=300)
def test_cloudflow_name_regex_matches_are_accepted(name: str) -> None:
    assert validate_name(name, Api.CLOUDFLOW) == name


@given(st.from_regex(BEDROCK_NAME, fullmatch=True))
@settings(max_examples=300)
def test_bedrock_name_regex_matches_are_accepted(name: str) -> None:
    assert validate_name(name, Api.BEDROCK) == name


@given(st.sampled_from(list(Api)), st.text(max_size=300))
@settings(max_examples=500)
def test_name_accepts_exactly_the_pattern(api: Api, name: str) -> None:
    # Anything other than InvalidArgument/MissingParameter escapes and fails the test.
    try:
        result = validate_name(name, api, "n")
    except MissingParameter as exc:
        assert name == ""
        assert exc.field == "n"
    except InvalidArgument as exc:
        assert type(exc) is InvalidArgument
        assert exc.field == "n"
        assert not NAME_PATTERNS[api].fullmatch(name)
    else:
        assert result == name
        assert NAME_PATTERNS[api].fullmatch(name)


# -- validate_alias_name ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["1", "12", "007", "99999", "1" * 100])
def test_bedrock_alias_name_all_digits_rejected(name: str) -> None:
    # Plain validate_name accepts these; only alias names must not look like versions.
    assert validate_name(name, Api.BEDROCK) == name
    with pytest.raises(InvalidArgument) as exc:
        validate_alias_name(name, Api.BEDROCK, "aliasName")
    _invalid(exc, "aliasName")


@pytest.mark.parametrize("name", ["1", "12", "007"])
def test_cloudflow_alias_name_all_digits_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_alias_name(name, Api.CLOUDFLOW, "AliasName")
    _invalid(exc, "AliasName")


@pytest.mark.parametrize(
    ("api", "name"),
    [
        (Api.BEDROCK, "1a"),
        (Api.BEDROCK, "1-2"),
        (Api.BEDROCK, "1_"),
        (Api.BEDROCK, "live"),
        (Api.CLOUDFLOW, "live"),
        (Api.CLOUDFLOW, "_1"),
        (Api.CLOUDFLOW, "canary-2"),
    ],
)
def test_alias_name_accepted(api: Api, name: str) -> None:
    assert validate_alias_name(name, api) == name


@pytest.mark.parametrize("api", list(Api))
@pytest.mark.parametrize("name", ["", None])
def test_alias_name_missing(api: Api, name: str | None) -> None:
    with pytest.raises(MissingParameter):
        validate_alias_name(name, api)


@pytest.mark.parametrize(("api", "name"), [(Api.BEDROCK, "a--b"), (Api.CLOUDFLOW, "bad name!")])
def test_alias_name_pattern_still_applies(api: Api, name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_alias_name(name, api, "AliasName")
    _invalid(exc, "AliasName")


@given(st.from_regex(r"[0-9]{1,100}", fullmatch=True))
def test_all_digit_alias_names_never_accepted(name: str) -> None:
    for api in Api:
        with pytest.raises(InvalidArgument) as exc:
            validate_alias_name(name, api)
        assert type(exc.value) is InvalidArgument


# -- validate_description -------------------------------------------------------------


@pytest.mark.parametrize(("api", "limit"), [(Api.CLOUDFLOW, 256), (Api.BEDROCK, 200)])
def test_description_limits(api: Api, limit: int) -> None:
    assert validate_description("x" * limit, api) == "x" * limit
    assert validate_description("é" * limit, api) == "é" * limit
    assert validate_description("", api) == ""
    assert validate_description(None, api) is None
    assert validate_description(None, api, allow_empty=False) is None
    with pytest.raises(InvalidArgument) as exc:
        validate_description("x" * (limit + 1), api, "Description")
    _invalid(exc, "Description")
    with pytest.raises(InvalidArgument) as exc:
        validate_description("", api, "Description", allow_empty=False)
    _invalid(exc, "Description")


def test_description_default_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_description("x" * 201, Api.BEDROCK)
    _invalid(exc, "description")


# -- parse_version --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1), (7, 7), (1, 1), ("99999", 99999), (99999, 99999), ("10", 10), ("12345", 12345)],
)
def test_parse_version_accepted(value: str | int, expected: int) -> None:
    assert parse_version(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0",
        0,
        "01",
        "00",
        "100000",
        100000,
        "-1",
        -1,
        "+1",
        "1.5",
        "1e3",
        "abc",
        " 1",
        "1 ",
        "1\n",
        "\u0661",  # Arabic-Indic digit one: int() would take it, the API does not
        "DRAFT",
        "$LATEST",
        True,
        False,
    ],
)
def test_parse_version_rejected(value: str | int) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_version(value, "Qualifier")
    _invalid(exc, "Qualifier")


@pytest.mark.parametrize("value", ["", None])
def test_parse_version_missing(value: str | None) -> None:
    with pytest.raises(MissingParameter) as exc:
        parse_version(value, "FlowVersion")
    assert exc.value.field == "FlowVersion"


@pytest.mark.parametrize("value", [1.5, 1.0, [1], {"v": 1}])
def test_parse_version_rejects_other_types(value: Any) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_version(value, "version")
    _invalid(exc, "version")


@given(st.integers(1, 99999))
def test_parse_version_round_trips(version: int) -> None:
    assert parse_version(version) == version
    assert parse_version(str(version)) == version


@given(st.integers().filter(lambda v: not 1 <= v <= 99999))
def test_parse_version_out_of_range(version: int) -> None:
    for value in (version, str(version)):
        with pytest.raises(InvalidArgument) as exc:
            parse_version(value)
        assert type(exc.value) is InvalidArgument


@given(st.text(max_size=20))
def test_parse_version_arbitrary_text(value: str) -> None:
    try:
        result = parse_version(value)
    except MissingParameter:
        assert value == ""
    except InvalidArgument as exc:
        assert type(exc) is InvalidArgument
    else:
        assert re.fullmatch(r"[1-9][0-9]{0,4}", value)
        assert result == int(value)


# -- validate_execution_name ------------------------------------------------------------


@pytest.mark.parametrize("name", [None, ""])
def test_execution_name_optional(name: str | None) -> None:
    assert validate_execution_name(name) is None


@pytest.mark.parametrize("name", ["run", "run-1", "_x", "1abc", "1", "a_b-c", "x" * 128])
def test_execution_name_accepted(name: str) -> None:
    assert validate_execution_name(name) == name


@pytest.mark.parametrize(
    "name", ["-abc", "-", "x" * 129, "a b", "exé", "a.b", "a/b", "run\n", "bad name!"]
)
def test_execution_name_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_execution_name(name)
    _invalid(exc, "ExecutionName")
    with pytest.raises(InvalidArgument) as exc:
        validate_execution_name(name, "name")
    _invalid(exc, "name")


@given(st.text(max_size=200))
def test_execution_name_arbitrary_text(name: str) -> None:
    try:
        result = validate_execution_name(name)
    except InvalidArgument as exc:
        assert type(exc) is InvalidArgument
        assert not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}", name)
    else:
        if name == "":
            assert result is None
        else:
            assert result == name
            assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}", name)


# -- validate_routes --------------------------------------------------------------------


def test_routes_relative_weights_kept_as_is() -> None:
    assert validate_routes([("1", 20), ("2", 30)], 10) == (Route(1, 20), Route(2, 30))


def test_routes_versions_as_str_and_int() -> None:
    routes = validate_routes([("1", 5), (2, 5), ("30", 0)], 10)
    assert routes == (Route(1, 5), Route(2, 5), Route(30, 0))
    assert all(type(r.version) is int for r in routes)


@pytest.mark.parametrize(
    "entries",
    [
        [(1, 5)],
        [(1, 100), (2, 0)],
        [(1, 0), (2, 1)],
        [(1, MAX_WEIGHT)],
        [(1, MAX_WEIGHT), (2, MAX_WEIGHT)],
        [(99999, 1)],
    ],
)
def test_routes_accepted(entries: list[tuple[Any, Any]]) -> None:
    routes = validate_routes(entries, 10)
    assert routes == tuple(Route(int(v), w) for v, w in entries)


def test_routes_max_entries() -> None:
    entries = [(v, 1) for v in range(1, 11)]
    assert len(validate_routes(entries, 10)) == 10
    with pytest.raises(InvalidArgument) as exc:
        validate_routes([*entries, (11, 1)], 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations")
    with pytest.raises(InvalidArgument) as exc:
        validate_routes(entries[:3], 2, "routingConfiguration")
    _invalid(exc, "routingConfiguration")


def test_routes_no_entries() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_routes([], 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations")


@pytest.mark.parametrize(
    "entries",
    [
        [(1, 1), (1, 2)],
        [("1", 1), (1, 2)],
        [("2", 1), ("3", 1), ("2", 0)],
    ],
)
def test_routes_duplicate_versions(entries: list[tuple[Any, Any]]) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_routes(entries, 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations")


@pytest.mark.parametrize(
    "weight",
    [-1, -(2**31), True, False, 1.0, 0.5, float("nan"), "5", "", None, [1], MAX_WEIGHT + 1, 2**64],
)
def test_routes_bad_weight(weight: Any) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_routes([(1, 5), (2, weight)], 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations")


@pytest.mark.parametrize("entries", [[(1, 0)], [(1, 0), (2, 0), (3, 0)]])
def test_routes_all_zero(entries: list[tuple[Any, Any]]) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_routes(entries, 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations")


@pytest.mark.parametrize("version", ["0", 0, "01", "abc", "1.5", -1, True, 100000])
def test_routes_bad_version(version: Any) -> None:
    # Version errors name the sub-field so the caller can tell which part is wrong.
    with pytest.raises(InvalidArgument) as exc:
        validate_routes([(version, 5)], 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations.version")


@pytest.mark.parametrize("version", ["", None])
def test_routes_missing_version(version: Any) -> None:
    with pytest.raises(MissingParameter) as exc:
        validate_routes([(version, 5)], 10, "routing")
    assert exc.value.field == "routing.version"


@pytest.mark.parametrize("version", [1.5, 1.0, [1], {"v": 1}])
def test_routes_version_of_other_type(version: Any) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_routes([(version, 5)], 10, "RoutingConfigurations")
    _invalid(exc, "RoutingConfigurations.version")


@given(
    st.lists(
        st.tuples(st.integers(1, 99999), st.integers(0, MAX_WEIGHT)),
        min_size=1,
        max_size=10,
        unique_by=lambda e: e[0],
    ).filter(lambda es: any(w for _, w in es)),
    st.booleans(),
)
def test_routes_valid_entries_round_trip(entries: list[tuple[int, int]], as_str: bool) -> None:
    raw = [(str(v) if as_str else v, w) for v, w in entries]
    assert validate_routes(raw, 10) == tuple(Route(v, w) for v, w in entries)


# -- values ------------------------------------------------------------------------------


def _flow() -> Flow:
    return Flow(
        id="ABCDEFGHIJ",
        name="orders",
        definition="Type: StateMachine",
        description="d",
        role_arn="acs:ram::1:role/r",
        type="FDL",
        execution_mode="Express",
        environment={"Variables": [{"Name": "A", "Value": "1"}]},
        encryption_key_arn="key",
        tags={"team": "a"},
        created_at=100,
        updated_at=100,
    )


def test_flow_update_all_none_keeps_everything() -> None:
    flow = _flow()
    updated = FlowUpdate().apply(flow, at=200)
    assert updated.updated_at == 200
    assert updated == Flow(
        **{f.name: getattr(flow, f.name) for f in fields(Flow)} | {"updated_at": 200}
    )
    assert flow.updated_at == 100  # the original value is untouched


def test_flow_update_changes_only_given_fields() -> None:
    flow = _flow()
    updated = FlowUpdate(description="new", definition="Type: X", execution_mode="Standard").apply(
        flow, at=300
    )
    assert updated.description == "new"
    assert updated.definition == "Type: X"
    assert updated.execution_mode == "Standard"
    assert updated.updated_at == 300
    for name in ("id", "name", "role_arn", "type", "environment", "encryption_key_arn", "tags"):
        assert getattr(updated, name) == getattr(flow, name)
    assert updated.created_at == 100


def test_flow_update_empty_string_is_a_change() -> None:
    # Only None means keep; an empty description clears it.
    assert FlowUpdate(description="").apply(_flow(), at=1).description == ""


def test_flow_update_covers_every_field() -> None:
    flow_fields = {f.name for f in fields(Flow)}
    assert {f.name for f in fields(FlowUpdate)} <= flow_fields


def _alias(routes: tuple[Route, ...]) -> Alias:
    return Alias(flow_id="F", id="A", name="live", routes=routes)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([20, 30], {1: 0.4, 2: 0.6}),
        ([5], {1: 1.0}),
        ([100, 0], {1: 1.0, 2: 0.0}),
        ([1, 1, 1, 1], {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}),
    ],
)
def test_alias_shares(weights: list[int], expected: dict[int, float]) -> None:
    alias = _alias(tuple(Route(v, w) for v, w in enumerate(weights, start=1)))
    assert alias.shares() == pytest.approx(expected)
    assert alias.versions() == frozenset(expected)


@given(
    st.lists(
        st.tuples(st.integers(1, 99999), st.integers(0, MAX_WEIGHT)),
        min_size=1,
        max_size=10,
        unique_by=lambda e: e[0],
    ).filter(lambda es: any(w for _, w in es))
)
def test_alias_shares_sum_to_one(entries: list[tuple[int, int]]) -> None:
    alias = _alias(validate_routes(entries, 10))
    shares = alias.shares()
    assert set(shares) == {v for v, _ in entries}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(0.0 <= s <= 1.0 for s in shares.values())
