"""How the Redis store lays out its keys and encodes its values.

Values are orjson-encoded bytes. Key layout (``P`` is the prefix, ``T`` the
flow's hash tag ``{flow:<id>}``, ``R`` the prefix as given, without the braces
a cluster adds to ``P``, and ``F`` the flow id):

=========================  ==========  ===========================================
key                        type        content
=========================  ==========  ===========================================
``P:flow_names``           hash        flow name -> flow id
``P:flow_index``           sorted set  flow names, all scored 0 (ZRANGEBYLEX pages)
``P:T:meta``               hash        ``name``; ``flow`` (Flow JSON); ``rev``, the
                                       revision route caches compare; ``vseq``, the
                                       last version number issued (never reused)
``P:T:versions``           hash        number -> ``[{description, created_at}, flow]``
``P:T:vindex``             sorted set  version numbers scored by themselves
``P:T:aliases``            hash        alias name -> Alias JSON
``P:T:alias_index``        sorted set  alias names, all scored 0
``P:T:alias_ids``          hash        alias id -> alias name
``P:T:rollouts``           hash        alias name -> its current or last rollout
                                       (``router.rollout.state`` JSON)
``P:T:rollout_seq``        hash        alias name -> writes of that rollout so far
``P:rollouts_active``      set         ``<flow id>/<alias>`` of active rollouts
``P:lease:<name>``         string      holder of a lease (``PX`` ttl): the rollout
                                       driver's
``P:T:exec:<name>``        string      legacy (v1 gateways): only deleted now, with
``P:T:execs``, ``P:T:exec_index``      the flow
``R:x:{F}:exec:<name>``    hash        one execution, with the record's TTL: ``r``
                                       the record JSON (``router.lifecycle.record``),
                                       ``k`` its counter base ``alias|rev|version``,
                                       ``f`` once final (``''``: ``r`` was written
                                       final; else the final part, JSON)
``R:x:{F}:execs``          sorted set  execution names scored by ``-started_at``
                                       (ms): newest first; expired names pruned
``R:x:{F}:outcomes``       hash        ``alias|revision|version|status`` -> count
                                       (status ``Started``, ``Slow`` and
                                       ``SlowSucceeded`` too); no TTL, deleted
                                       with the flow
``R:x:{F}:stats:<n>``      hash        10 s bucket ``n`` of statistics (one
                                       hour TTL): ``alias|revision|version|what``
                                       -> count (``router.store.stats``)
``R:x:{F}:slow``           hash        alias -> slow threshold (ms) while a
                                       rollout with ``slowSeconds`` runs
                                       (``Store.set_slow_threshold``)
``R:x:{F}:gone``           string      tombstone of a deleted flow (7 days): late
                                       journal flushes write nothing
``R:polls:{k}``            sorted set  poll shard ``k`` (0..15, crc32 of the
                                       member mod 16): ``<flow id>/<name>`` -> due ms
``R:polls:{k}:attempt``    hash        the same members -> the attempt number
``P:secret:<name>``        string      a secret shared by the replicas (no TTL)
``P:token:<n>:<scope>:<t>``  string    IdempotencyRecord JSON with its TTL; ``n`` is
                                       ``len(scope)``, so no scope/token pair clashes
``P:bucket:<bucket>``      hash        a rate-limit token bucket
``P:changes``              channel     flow ids, published by every write that
                                       bumps a flow's revision
=========================  ==========  ===========================================

Deployments (URL forms and timeouts: ``router.store.redis_client``):

* One server, or Sentinel: exactly the layout above. Every key of one flow
  carries the flow's hash tag.
* Cluster: a script may only touch keys of one hash slot, and flow create,
  rename and delete touch the global name index and a flow's keys at once.
  Rather than split those writes into steps that readers would have to
  tolerate half-done, the store puts *all* its keys in one slot: the prefix
  itself becomes the hash tag (``{fr}:flow_names``, ``{fr}:{flow:<id>}:meta``;
  Redis hashes only the first ``{…}`` of a key). Every script, quota check and
  revision bump is then exactly as atomic as on one server. The trade-off: the
  cluster gives flow-router failover (and room for other applications' data)
  but does not shard flow-router's own keys, which all live on the one master
  that owns the prefix's slot. That data set is small (flows, versions,
  aliases, and named executions until their TTL), and routing reads none of it
  on the hot path. The change feed uses plain PUBLISH, which a cluster
  broadcasts to every node, so the subscriber may sit on any node.
* Cluster, executions: the ``R:x:{F}:…`` and ``R:polls:{k}`` keys are the
  exception. They start with the bare prefix, so their first ``{…}`` is the
  flow id (or the poll shard): the slot is per flow, and execution records,
  the bulk of the data, spread over the masters. Every execution write
  touches one flow's execution keys only (one script, one slot), so it is as
  atomic as before; only ``delete_flow`` spans both slots: it deletes the
  flow, then its executions (best effort, not atomic; a recreated flow gets a
  new id, so nothing clashes, and the tombstone stops late writes).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from router.errors import (
    AliasAlreadyExists,
    AliasNotFound,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    FlowAlreadyExists,
    FlowNotFound,
    InvalidToken,
    ResourceInUse,
    RouterError,
    VersionNotFound,
)
from router.lifecycle import record as lifecycle
from router.lifecycle.status import Status
from router.model import Alias, Flow, FlowVersion, Route
from router.store.base import (
    IdempotencyRecord,
    OutcomeKey,
    Page,
    execution_token,
    parse_execution_token,
    quota_exceeded,
)
from router.store.memory_rollouts import rollout_active

# -- keys ----------------------------------------------------------------------


def cluster_prefix(prefix: str) -> str:
    """The prefix as the one hash tag of every key, on a cluster (see above)."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix {prefix!r}: no braces with Redis Cluster")
    return f"{{{prefix}}}"


class GlobalKeys:
    """The keys that are not one flow's."""

    __slots__ = ("active_rollouts", "channel", "index", "names", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names = f"{prefix}:flow_names"
        self.index = f"{prefix}:flow_index"
        self.channel = f"{prefix}:changes"
        self.active_rollouts = f"{prefix}:rollouts_active"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def token(self, scope: str, token: str) -> str:
        return f"{self.prefix}:token:{len(scope)}:{scope}:{token}"


class FlowKeys:
    """The keys of one flow, all with its hash tag."""

    __slots__ = (
        "alias_ids",
        "alias_index",
        "aliases",
        "base",
        "exec_index",
        "execs",
        "meta",
        "rollout_seq",
        "rollouts",
        "versions",
        "vindex",
    )

    def __init__(self, prefix: str, flow_id: str) -> None:
        self.base = f"{prefix}:{{flow:{flow_id}}}:"
        self.meta = self.base + "meta"
        self.versions = self.base + "versions"
        self.vindex = self.base + "vindex"
        self.aliases = self.base + "aliases"
        self.alias_index = self.base + "alias_index"
        self.alias_ids = self.base + "alias_ids"
        self.execs = self.base + "execs"
        self.exec_index = self.base + "exec_index"
        self.rollouts = self.base + "rollouts"
        self.rollout_seq = self.base + "rollout_seq"

    def execution(self, name: str) -> str:
        return f"{self.base}exec:{name}"


POLL_SHARDS = 16
TOMBSTONE_TTL_S = 7 * 24 * 3600


class ExecutionKeys:
    """One flow's execution keys: hash tag ``{<flow id>}``, after the bare prefix."""

    __slots__ = ("base", "execs", "gone", "outcomes", "slow")

    def __init__(self, raw_prefix: str, flow_id: str) -> None:
        self.base = f"{raw_prefix}:x:{{{flow_id}}}:exec:"
        tagged = f"{raw_prefix}:x:{{{flow_id}}}:"
        self.execs = tagged + "execs"
        self.outcomes = tagged + "outcomes"
        self.gone = tagged + "gone"
        self.slow = tagged + "slow"

    def execution(self, name: str) -> str:
        return self.base + name


def poll_member(flow_id: str, name: str) -> str:
    return f"{flow_id}/{name}"


def poll_keys(raw_prefix: str, shard: int) -> tuple[str, str]:
    """The due set and the attempts of one poll shard."""
    due = f"{raw_prefix}:polls:{{{shard}}}"
    return due, due + ":attempt"


def poll_shard(member: str) -> int:
    return zlib.crc32(member.encode()) % POLL_SHARDS


# -- values --------------------------------------------------------------------


def encode_flow(flow: Flow) -> bytes:
    fields = {name: getattr(flow, name) for name in Flow.__slots__}
    fields["tags"] = dict(flow.tags)
    return orjson.dumps(fields)


def decode_flow(raw: bytes | str) -> Flow:
    return Flow(**orjson.loads(raw))


def encode_version_fields(description: str, created_at: int) -> bytes:
    return orjson.dumps({"description": description, "created_at": created_at})


def decode_version(flow_id: str, number: int, raw: bytes) -> FlowVersion:
    own, flow = orjson.loads(raw)
    return FlowVersion(
        flow_id=flow_id,
        version=number,
        description=own["description"],
        definition=flow["definition"],
        role_arn=flow["role_arn"],
        created_at=own["created_at"],
    )


def encode_alias(alias: Alias) -> bytes:
    fields = {name: getattr(alias, name) for name in Alias.__slots__ if name != "flow_id"}
    fields["routes"] = [[r.version, r.weight] for r in alias.routes]
    fields["tags"] = dict(alias.tags)
    return orjson.dumps(fields)


def decode_alias(flow_id: str, raw: bytes) -> Alias:
    fields = orjson.loads(raw)
    fields["routes"] = tuple(Route(v, w) for v, w in fields["routes"])
    return Alias(flow_id=flow_id, **fields)


def execution_args(record: lifecycle.ExecutionRecord) -> list[Any]:
    """The 5 per-execution arguments of WRITE_EXECUTIONS."""
    final = record.status.value if record.is_final else ""
    return [
        lifecycle.encode(record).decode(),
        counter_base(record.alias, record.revision, record.version),
        final,
        -record.started_at,
        record.name,
    ]


def counter_base(alias: str, revision: int, version: str) -> str:
    return f"{alias}|{revision}|{version}"


def decode_outcome(field: bytes | str) -> OutcomeKey:
    alias, revision, version, status = text(field).rsplit("|", 3)
    return OutcomeKey(alias, int(revision), version, status)


def encode_final(
    status: Status, output: Any, error: str | None, cause: str | None, at: int
) -> bytes:
    body: dict[str, Any] = {"status": status.value, "at": at}
    for name, value in (("output", output), ("error", error), ("cause", cause)):
        if value is not None:
            body[name] = value
    return orjson.dumps(body)


def decode_stored(record: bytes | str, final: bytes | str | None) -> lifecycle.ExecutionRecord:
    """An execution hash's ``r`` and ``f`` as one record (see the layout above)."""
    decoded = lifecycle.decode(record)
    if not final:
        return decoded
    body = orjson.loads(final)
    done = lifecycle.finish(
        decoded,
        Status(body["status"]),
        body.get("output"),
        body.get("error"),
        body.get("cause"),
        body["at"],
    )
    return decoded if done is None else done


def execution_page(reply: Sequence[bytes], limit: int) -> Page[lifecycle.ExecutionRecord]:
    """LIST_EXECUTIONS's pairs (one more than ``limit`` read) as a page."""
    records = [decode_stored(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]
    following = execution_token(records[limit]) if len(records) > limit else None
    return Page(records[:limit], following)


def list_start(token: str | None) -> tuple[str, str]:
    """LIST_EXECUTIONS's first score and name for a page token."""
    if not token:
        return "-inf", ""
    started, name = parse_execution_token(token)
    return str(-started), name


def encode_token(record: IdempotencyRecord) -> bytes:
    return orjson.dumps({"fingerprint": record.fingerprint, "resource": record.resource})


def decode_token(raw: bytes | str) -> IdempotencyRecord:
    return IdempotencyRecord(**orjson.loads(raw))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- script arguments and answers ------------------------------------------------

_ERRORS: dict[bytes, Callable[..., RouterError]] = {
    b"FLOW_EXISTS": FlowAlreadyExists,
    b"FLOW_IN_USE": lambda name: ResourceInUse(f"flow {name} still has aliases"),
    b"VERSION_NOT_FOUND": VersionNotFound,
    b"VERSION_IN_USE": lambda v, alias: ResourceInUse(f"version {v} is routed to by alias {alias}"),
    b"ALIAS_EXISTS": AliasAlreadyExists,
    b"ALIAS_NOT_FOUND": AliasNotFound,
    b"EXECUTION_EXISTS": ExecutionAlreadyExists,
    b"EXECUTION_NOT_FOUND": ExecutionNotFound,
    b"QUOTA_EXCEEDED": quota_exceeded,
    b"ROLLOUT_ACTIVE": rollout_active,
}


def checked(reply: list[Any], flow_ref: str) -> list[Any]:
    """The payload of a script's ``OK`` answer; any error code raised as its domain error."""
    status = reply[0]
    if status == b"OK":
        return reply[1:]
    if status == b"FLOW_NOT_FOUND":
        raise FlowNotFound(flow_ref)
    raise _ERRORS[status](*(d.decode() for d in reply[1:]))


def page_start(token: str | None, mode: str) -> str:
    """Where the PAGE script starts: ``lex`` pages by name, ``score`` by number."""
    if mode == "lex":
        return f"[{token}" if token else "-"
    if not token:
        return "-inf"
    try:
        return str(int(token))
    except ValueError:
        raise InvalidToken() from None


def next_page(keys: Sequence[bytes], limit: int) -> str | None:
    """The token of the page after ``limit`` of ``keys`` (one more was read to know)."""
    return keys[limit].decode() if len(keys) > limit else None


def quota_arg(value: int | None) -> int | str:
    """A quota as a script argument: ``''`` for none."""
    return "" if value is None else value
