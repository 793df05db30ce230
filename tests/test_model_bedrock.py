"""The Bedrock-specific validators of router/model.py (docs/wire.md §3.1 and the botocore model)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import model
from router.dialects.bedrock import parsing
from router.errors import InvalidArgument, MissingParameter

TAG = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
TOKEN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,256}")
TAG_CHARS = st.sampled_from("abcXYZ019 ._:/=+@-")


def _names(exc: pytest.ExceptionInfo[InvalidArgument], field: str) -> None:
    assert exc.value.field == field
    assert field in exc.value.message


# -- tags -------------------------------------------------------------------------------


@given(
    st.dictionaries(
        st.text(TAG_CHARS, min_size=1, max_size=128), st.text(TAG_CHARS, max_size=256), max_size=5
    )
)
def test_valid_tags_pass(tags: dict[str, str]) -> None:
    assert model.validate_tags(tags) == tags


@given(st.dictionaries(st.text(max_size=140), st.text(max_size=270), min_size=1, max_size=3))
def test_tags_are_checked_like_the_api_documents(tags: dict[str, str]) -> None:
    valid = all(
        1 <= len(k) <= 128 and len(v) <= 256 and TAG.fullmatch(k) and TAG.fullmatch(v)
        for k, v in tags.items()
    )
    if valid:
        assert model.validate_tags(tags) == tags
    else:
        with pytest.raises(InvalidArgument) as e:
            model.validate_tags(tags)
        _names(e, "tags")


@pytest.mark.parametrize("tags", [["k"], {"k": 1}, {1: "v"}, "k=v"])
def test_tags_must_map_strings_to_strings(tags: Any) -> None:
    with pytest.raises(InvalidArgument) as e:
        model.validate_tags(tags)
    _names(e, "tags")


def test_tag_keys() -> None:
    assert model.validate_tag_keys(["a", "b c"]) == ["a", "b c"]
    for bad in ("", "k" * 129, "k!"):
        with pytest.raises(InvalidArgument) as e:
            model.validate_tag_keys(["ok", bad])
        _names(e, "tagKeys")


# -- client tokens ------------------------------------------------------------------------


def test_botocore_generated_tokens_pass() -> None:
    for _ in range(20):
        token = str(uuid.uuid4())
        assert model.validate_client_token(token) == token
    assert model.validate_client_token(None) is None


@given(st.text(st.sampled_from("aZ9-_"), min_size=30, max_size=260))
def test_client_token_length_and_pattern(token: str) -> None:
    if 33 <= len(token) <= 256 and TOKEN.fullmatch(token):
        assert model.validate_client_token(token) == token
    else:
        with pytest.raises(InvalidArgument) as e:
            model.validate_client_token(token)
        _names(e, "clientToken")


# -- ARNs, descriptions, definitions ---------------------------------------------------------


def test_role_arn() -> None:
    for good in (
        "arn:aws:iam::123456789012:role/r",
        "arn:aws-cn:iam::123456789012:role/service-role/x",
        "arn:aws:iam:::role/r",
    ):
        assert model.validate_role_arn(good) == good
    with pytest.raises(MissingParameter):
        model.validate_role_arn(None)
    for bad in ("", "arn:aws:iam::123:role/r", "arn:aws:iam::123456789012:user/u", 5):
        with pytest.raises(InvalidArgument) as e:
            model.validate_role_arn(bad)
        _names(e, "executionRoleArn")


def test_kms_key_arn() -> None:
    good = f"arn:aws:kms:us-east-1:123456789012:key/{uuid.uuid4()}"
    assert model.validate_kms_key_arn(good) == good
    assert model.validate_kms_key_arn(None) == ""
    with pytest.raises(InvalidArgument) as e:
        model.validate_kms_key_arn("arn:aws:kms:us-east-1:123456789012:key/short")
    _names(e, "customerEncryptionKeyArn")


@pytest.mark.parametrize(("text", "ok"), [(None, True), ("d", True), ("d" * 200, True),
                                          ("", False), ("d" * 201, False), (5, False)])  # fmt: skip
def test_bedrock_description(text: Any, ok: bool) -> None:
    if ok:
        assert model.validate_bedrock_description(text) == text
    else:
        with pytest.raises(InvalidArgument) as e:
            model.validate_bedrock_description(text)
        _names(e, "description")


def test_definition_is_a_structure() -> None:
    assert parsing.validate_bedrock_definition(None) is None
    assert parsing.validate_bedrock_definition({"nodes": []}) == {"nodes": []}
    with pytest.raises(InvalidArgument):
        parsing.validate_bedrock_definition("version: v1")


# -- routing --------------------------------------------------------------------------------


def test_route_entries_feed_validate_routes_with_a_maximum_of_one() -> None:
    entries = parsing.bedrock_route_entries([{"flowVersion": "3"}])
    assert model.validate_routes(entries, 1, "routingConfiguration") == (model.Route(3, 1),)
    two = parsing.bedrock_route_entries([{"flowVersion": "1"}, {"flowVersion": "2"}])
    with pytest.raises(InvalidArgument) as e:
        model.validate_routes(two, 1, "routingConfiguration")
    _names(e, "routingConfiguration")


@pytest.mark.parametrize("raw", [None, "1", [1], [{"flowVersion": "DRAFT"}], [{}]])
def test_route_entries_reject(raw: Any) -> None:
    with pytest.raises(InvalidArgument) as e:
        parsing.bedrock_route_entries(raw)
    assert e.value.field is not None and e.value.field.startswith("routingConfiguration")


# -- runtime requests -------------------------------------------------------------------------


def test_flow_execution_name() -> None:
    assert model.validate_flow_execution_name(None) is None
    assert model.validate_flow_execution_name("run-1") == "run-1"
    for bad in ("", "-run", "a_b", "x" * 37):
        with pytest.raises(InvalidArgument) as e:
            model.validate_flow_execution_name(bad)
        _names(e, "flowExecutionName")


def test_flow_inputs() -> None:
    good = [{"nodeName": "FlowInputNode", "content": {"document": {"q": [1]}}}]
    assert parsing.validate_flow_inputs(good) == {"q": [1]}
    assert parsing.validate_flow_inputs([{"nodeName": "In", "content": {"document": None}}]) is None
    with pytest.raises(MissingParameter):
        parsing.validate_flow_inputs(None)
    for bad, field in [
        ([], "inputs"),
        (good * 2, "inputs"),
        ([{"content": {"document": 1}}], "inputs.nodeName"),
        ([{"nodeName": "9x", "content": {"document": 1}}], "inputs.nodeName"),
        ([{"nodeName": "In", "content": {}}], "inputs.content"),
    ]:
        with pytest.raises(InvalidArgument) as e:
            parsing.validate_flow_inputs(bad)
        assert e.value.field == field


def test_max_results() -> None:
    assert parsing.validate_max_results(None) is None
    assert parsing.validate_max_results("1000") == 1000
    for bad in ("0", "1001", "-1", "x"):
        with pytest.raises(InvalidArgument) as e:
            parsing.validate_max_results(bad)
        _names(e, "maxResults")
