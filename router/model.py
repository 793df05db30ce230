"""The one model both API dialects share: flows, versions, aliases, routing.

Values are frozen dataclasses; validation lives here and nowhere else. The two
APIs name things differently and have different name patterns, so validators
take an :class:`Api` and apply that API's documented rules; everything that is
common (weights, duplicate versions, counts) is checked the same way for both.

Times are integer milliseconds since the epoch; dialects format them.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from router.errors import InvalidArgument, MissingParameter


class Api(Enum):
    CLOUDFLOW = "cloudflow"
    BEDROCK = "bedrock"


# CloudFlow: flow names are 1-128 chars, start with a letter or underscore.
# Bedrock: ``([0-9a-zA-Z][_-]?){1,100}`` for flows and aliases (docs/wire.md §3.1).
_NAME_PATTERNS: Mapping[Api, re.Pattern[str]] = {
    Api.CLOUDFLOW: re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}"),
    Api.BEDROCK: re.compile(r"(?:[0-9a-zA-Z][_-]?){1,100}"),
}
_DESCRIPTION_MAX: Mapping[Api, int] = {Api.CLOUDFLOW: 256, Api.BEDROCK: 200}
_VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,4}")
_EXECUTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
_ID_ALPHABET = string.ascii_uppercase + string.digits
ID_LENGTH = 10
MAX_WEIGHT = 2**31 - 1  # CloudFlow's Weight is an int32
DRAFT = "DRAFT"  # Bedrock's working copy of a flow; never an alias target here


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A 10-character upper-case alphanumeric id, the shape Bedrock uses."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


# -- values ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    name: str
    definition: Any  # CloudFlow: YAML/JSON text; Bedrock: a JSON document
    description: str = ""
    role_arn: str = ""
    type: str = "FDL"
    execution_mode: str = "Standard"
    environment: Any = None  # CloudFlow Environment: a JSON object ({"Variables": [...]})
    encryption_key_arn: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    status: str = "NotPrepared"  # Bedrock's draft state: NotPrepared | Prepared


@dataclass(frozen=True, slots=True)
class FlowVersion:
    flow_id: str
    version: int
    description: str
    definition: Any  # snapshot of the flow's definition when published
    role_arn: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Route:
    """One routing entry: a published version and its relative weight."""

    version: int
    weight: int


@dataclass(frozen=True, slots=True)
class Alias:
    flow_id: str
    id: str
    name: str
    routes: tuple[Route, ...]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    revision: int = 1  # bumped by every write, so caches can tell stale from fresh
    # Route by the execution name as the sticky key when no X-Routing-Key is given.
    sticky_execution_name: bool = False

    def versions(self) -> frozenset[int]:
        return frozenset(r.version for r in self.routes)

    def shares(self) -> dict[int, float]:
        """Configured share per version, as a fraction of the total weight."""
        total = sum(r.weight for r in self.routes)
        return {r.version: r.weight / total for r in self.routes}


@dataclass(frozen=True, slots=True)
class FlowUpdate:
    """Fields to change on a flow; ``None`` means keep."""

    name: str | None = None
    definition: Any = None
    description: str | None = None
    role_arn: str | None = None
    type: str | None = None
    execution_mode: str | None = None
    environment: Any = None
    encryption_key_arn: str | None = None
    tags: Mapping[str, str] | None = None  # the complete new tag set
    status: str | None = None

    def apply(self, flow: Flow, at: int) -> Flow:
        changes = {k: v for k, v in _fields(self).items() if v is not None}
        return replace(flow, **changes, updated_at=at)


@dataclass(frozen=True, slots=True)
class AliasUpdate:
    """Fields to change on an alias; ``None`` means keep."""

    routes: tuple[Route, ...] | None = None
    description: str | None = None
    name: str | None = None
    tags: Mapping[str, str] | None = None  # the complete new tag set
    sticky_execution_name: bool | None = None

    def apply(self, alias: Alias, at: int) -> Alias:
        """The updated alias, with its revision bumped so caches notice."""
        changes = {k: v for k, v in _fields(self).items() if v is not None}
        return replace(alias, **changes, updated_at=at, revision=alias.revision + 1)


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


# -- validation ----------------------------------------------------------------


def require(value: str | None, field_name: str) -> str:
    """The SDKs send unset strings as absent or empty; both mean missing."""
    if value is None or value == "":
        raise MissingParameter(field_name)
    return value


def validate_name(name: str | None, api: Api, field_name: str = "name") -> str:
    name = require(name, field_name)
    if not _NAME_PATTERNS[api].fullmatch(name):
        raise InvalidArgument(
            f"{field_name} {name!r} does not match {_NAME_PATTERNS[api].pattern}", field_name
        )
    return name


def validate_alias_name(name: str | None, api: Api, field_name: str = "name") -> str:
    name = validate_name(name, api, field_name)
    # A StartExecution Qualifier is either an alias name or a version number;
    # an all-digit alias name would make the two indistinguishable.
    if name.isdigit():
        raise InvalidArgument(f"{field_name} {name!r} must not be all digits", field_name)
    return name


MAX_JSON_DEPTH = 64  # orjson cannot encode documents nested deeper than 254


def validate_json_depth(document: Any, field_name: str, limit: int = MAX_JSON_DEPTH) -> Any:
    """Refuse JSON nested deeper than ``limit`` before anything is stored or sent.

    A document the gateway accepted must also be one it can answer with and
    forward; iterative, so a hostile document cannot exhaust the stack here.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise InvalidArgument(f"{field_name} is nested deeper than {limit} levels", field_name)
        stack.extend((child, depth + 1) for child in children)
    return document


def validate_description(
    text: str | None, api: Api, field_name: str = "description", *, allow_empty: bool = True
) -> str | None:
    if text is None:
        return None
    limit = _DESCRIPTION_MAX[api]
    if len(text) > limit or (not allow_empty and text == ""):
        raise InvalidArgument(f"{field_name} must be 1 to {limit} characters long", field_name)
    return text


def validate_execution_name(name: str | None, field_name: str = "ExecutionName") -> str | None:
    """Optional; when given: 1-128 letters, digits, ``_`` or ``-``, not starting with ``-``."""
    if name is None or name == "":
        return None
    if not _EXECUTION_NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"{field_name} {name!r} does not match {_EXECUTION_NAME_PATTERN.pattern}", field_name
        )
    return name


def parse_version(value: str | int | None, field_name: str = "version") -> int:
    """A published version number: a positive integer of at most 5 digits."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{field_name} must be a version number", field_name)
    if isinstance(value, int):
        value = str(value)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{field_name} must be a version number", field_name)
    value = require(value, field_name)
    if not _VERSION_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field_name} {value!r} is not a version number", field_name)
    return int(value)


def validate_routes(
    entries: Sequence[tuple[Any, Any]], max_entries: int, field_name: str = "routing"
) -> tuple[Route, ...]:
    """Check (version, weight) pairs and return them as routes.

    Weights are relative non-negative integers: 20/30 means 40%/60%, a single
    version with weight 5 takes everything, 100/0 sends everything to the
    first. At least one weight must be positive or nothing could be chosen.
    """
    if not 1 <= len(entries) <= max_entries:
        raise InvalidArgument(
            f"{field_name} must have 1 to {max_entries} entries, got {len(entries)}", field_name
        )
    routes: list[Route] = []
    seen: set[int] = set()
    for raw_version, raw_weight in entries:
        version = parse_version(raw_version, f"{field_name}.version")
        if version in seen:
            raise InvalidArgument(f"{field_name} lists version {version} twice", field_name)
        seen.add(version)
        if isinstance(raw_weight, bool) or not isinstance(raw_weight, int):
            raise InvalidArgument(f"{field_name}.weight must be an integer", field_name)
        if not 0 <= raw_weight <= MAX_WEIGHT:
            raise InvalidArgument(
                f"{field_name}.weight must be between 0 and {MAX_WEIGHT}", field_name
            )
        routes.append(Route(version, raw_weight))
    if not any(r.weight for r in routes):
        raise InvalidArgument(f"{field_name} needs at least one positive weight", field_name)
    return tuple(routes)


# -- Bedrock-specific validation -------------------------------------------------
# Constraints of the Bedrock Flows API reference (docs/wire.md §3.1 and the botocore model)
# that botocore does not check client-side: it checks minimum lengths only, so
# maximum lengths, patterns and list maxima reach the gateway and are checked here.

_TAG_PATTERN = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
_TAG_KEY_MAX = 128
_TAG_VALUE_MAX = 256
_CLIENT_TOKEN_PATTERN = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,256}")
_CLIENT_TOKEN_LENGTH = (33, 256)
_ROLE_ARN_PATTERN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/(service-role/)?.+")
_KMS_KEY_ARN_PATTERN = re.compile(
    r"arn:aws(|-cn|-us-gov):kms:[a-zA-Z0-9-]*:[0-9]{12}:key/[a-zA-Z0-9-]{36}"
)
_ARN_MAX = 2048
# StartFlowExecution's flowExecutionName is ``[a-zA-Z0-9-]{1,36}``; it also becomes
# the execution's name at the executor, whose names may not start with ``-``.
_FLOW_EXECUTION_NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,35}")


def _string(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field_name} must be a string", field_name)
    return value


def validate_tags(tags: Any, field_name: str = "tags") -> dict[str, str]:
    """A tag map: keys 1-128 and values 0-256 characters of ``[a-zA-Z0-9\\s._:/=+@-]``."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidArgument(f"{field_name} must be a map of strings to strings", field_name)
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"{field_name} must map strings to strings", field_name)
        if not 1 <= len(key) <= _TAG_KEY_MAX:
            raise InvalidArgument(
                f"{field_name} key {key!r} must be 1 to {_TAG_KEY_MAX} characters long",
                field_name,
            )
        if len(value) > _TAG_VALUE_MAX:
            raise InvalidArgument(
                f"{field_name} value of {key!r} must be at most {_TAG_VALUE_MAX} characters long",
                field_name,
            )
        for kind, text in (("key", key), ("value", value)):
            if not _TAG_PATTERN.fullmatch(text):
                raise InvalidArgument(
                    f"{field_name} {kind} {text!r} does not match {_TAG_PATTERN.pattern}",
                    field_name,
                )
    return dict(tags)


def validate_tag_keys(keys: Sequence[str], field_name: str = "tagKeys") -> list[str]:
    for key in keys:
        if not 1 <= len(key) <= _TAG_KEY_MAX or not _TAG_PATTERN.fullmatch(key):
            raise InvalidArgument(
                f"{field_name} entry {key!r} must be 1 to {_TAG_KEY_MAX} characters of "
                f"{_TAG_PATTERN.pattern}",
                field_name,
            )
    return list(keys)


def validate_client_token(token: Any, field_name: str = "clientToken") -> str | None:
    """Optional: 33-256 characters, alphanumeric runs joined by hyphens."""
    if token is None:
        return None
    text = _string(token, field_name)
    low, high = _CLIENT_TOKEN_LENGTH
    if not low <= len(text) <= high:
        raise InvalidArgument(f"{field_name} must be {low} to {high} characters long", field_name)
    if not _CLIENT_TOKEN_PATTERN.fullmatch(text):
        raise InvalidArgument(
            f"{field_name} does not match {_CLIENT_TOKEN_PATTERN.pattern}", field_name
        )
    return text


def validate_role_arn(arn: Any, field_name: str = "executionRoleArn") -> str:
    """Required: an IAM role ARN of at most 2048 characters."""
    if arn is None:
        raise MissingParameter(field_name)
    text = _string(arn, field_name)
    if len(text) > _ARN_MAX or not _ROLE_ARN_PATTERN.fullmatch(text):
        raise InvalidArgument(
            f"{field_name} {text!r} is not an IAM role ARN ({_ROLE_ARN_PATTERN.pattern})",
            field_name,
        )
    return text


def validate_kms_key_arn(arn: Any, field_name: str = "customerEncryptionKeyArn") -> str:
    """Optional (``""`` when absent): a KMS key ARN."""
    if arn is None:
        return ""
    text = _string(arn, field_name)
    if len(text) > _ARN_MAX or not _KMS_KEY_ARN_PATTERN.fullmatch(text):
        raise InvalidArgument(f"{field_name} {text!r} is not a KMS key ARN", field_name)
    return text


def validate_bedrock_description(text: Any, field_name: str = "description") -> str | None:
    """Optional; when present 1-200 characters (Bedrock has no empty description)."""
    if text is None:
        return None
    return validate_description(
        _string(text, field_name), Api.BEDROCK, field_name, allow_empty=False
    )


def validate_flow_execution_name(name: Any, field_name: str = "flowExecutionName") -> str | None:
    if name is None:
        return None
    text = _string(name, field_name)
    if not _FLOW_EXECUTION_NAME_PATTERN.fullmatch(text):
        raise InvalidArgument(
            f"{field_name} {text!r} does not match {_FLOW_EXECUTION_NAME_PATTERN.pattern}",
            field_name,
        )
    return text
