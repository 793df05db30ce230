"""From a store URL to redis-py clients: one server, Sentinel, or Cluster.

URL forms (``[user:]password@`` is optional everywhere; percent-encode ``@ : / ,``
inside a password):

==============================================================================  ==========
``redis://[[user]:password@]host:port[/db][?option=value&…]``                    one server
``rediss://…`` (TLS), ``unix:///path/to/redis.sock[?db=N]``                      one server
``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db][?…]``   Sentinel
``redis+cluster://[[user]:password@]host:port[,host:port…][?…]``                 Cluster
==============================================================================  ==========

For Sentinel the hosts are the sentinels and ``service`` is the name they
monitor (``sentinel monitor <service> …``); the password is the master's. For
Cluster the hosts are any nodes to start from; the client discovers the rest.

Options, in the query string of every form:

* ``socket_connect_timeout`` seconds to open a connection (default 1);
* ``socket_timeout`` seconds to wait for any answer (default 2): a hung
  server fails a request after this long instead of holding it;
* ``health_check_interval`` seconds a pooled connection may idle before it is
  checked with a PING when next used (default 5);
* Sentinel only: ``sentinel_username`` and ``sentinel_password``, when the
  sentinels themselves require credentials.

``redis://`` URLs also accept every other option redis-py's ``from_url`` parses.

No command is retried by the client: a command that failed on a broken
connection may still have run on the server, and re-running a store script
could apply a write twice. The store raises ``Unavailable`` instead, which each
dialect answers with a retryable error. Connections are checked when taken from
the pool, so a restarted server costs no error on a pooled connection.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.errors import Unavailable

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py before 7 has no maintenance notifications
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME, CLUSTER_SCHEME)

CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 5

# Failures that mean "Redis is not there (now)": the caller may retry later.
# ReadOnlyError: a Sentinel master demoted under us; the cluster errors: a node
# or the slot's master is down, or the client cannot reach any node to learn
# the topology (RedisClusterException).
UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    RedisClusterException,
    OSError,
)
FAILURE_LOG_INTERVAL_S = 10.0
UNAVAILABLE = "store unavailable"  # all a client is told of an unreachable store

_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_connect_timeout": float,
    "socket_timeout": float,
    "health_check_interval": int,
}
_SENTINEL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "sentinel_username": str,
    "sentinel_password": str,
}


def defaults() -> dict[str, Any]:
    """Connection options every client starts from (the URL's options win)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if MaintNotificationsConfig is not None:
        # redis-py 8 skips its check of pooled connections while maintenance
        # notifications are "auto" (its default), so a connection a restarted
        # server closed would be reused and fail. They need RESP3 and a server
        # that sends them; this client speaks RESP2.
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


@dataclass
class Clients:
    """What a RedisStore talks through.

    ``client`` runs every command; ``node_options`` (Cluster only) are the
    connection options for a plain client on one node, which the change feed
    subscribes through; ``also_close`` are clients the store owns besides
    ``client`` (Sentinel's connections to the sentinels).
    """

    client: redis.asyncio.Redis | RedisCluster
    node_options: dict[str, Any] = field(default_factory=dict)
    also_close: list[redis.asyncio.Redis] = field(default_factory=list)

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)


def connect(url: str) -> Clients:
    """Clients for ``url`` (see the module docstring); no I/O until first used."""
    if url.startswith(SENTINEL_SCHEME):
        return _sentinel(url)
    if url.startswith(CLUSTER_SCHEME):
        return _cluster(url)
    if url.startswith(SCHEMES):
        # from_url lets the URL's own options override these keyword defaults.
        return Clients(redis.asyncio.from_url(url, **defaults()))
    raise ValueError(f"not a Redis URL: {url!r}")


@dataclass(frozen=True)
class _MultiHostUrl:
    hosts: list[tuple[str, int]]
    path: list[str]
    username: str | None
    password: str | None
    options: dict[str, Any]


def _parse(url: str, scheme: str, allowed: dict[str, Callable[[str], Any]]) -> _MultiHostUrl:
    rest = url[len(scheme) :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = []
    for part in netloc.split(","):
        host, colon, port = part.rpartition(":")
        if not colon or not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"{url!r}: every host must be given as host:port")
        hosts.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parse = allowed.get(name)
        if parse is None:
            raise ValueError(f"{url!r}: unknown option {name!r} (known: {', '.join(allowed)})")
        try:
            options[name] = parse(value)
        except ValueError:
            raise ValueError(f"{url!r}: invalid value for {name!r}") from None
    return _MultiHostUrl(hosts, [p for p in path.split("/") if p], username, password, options)


def _credentials(parsed: _MultiHostUrl) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if parsed.username:
        found["username"] = parsed.username
    if parsed.password is not None:
        found["password"] = parsed.password
    return found


def _sentinel(url: str) -> Clients:
    parsed = _parse(url, SENTINEL_SCHEME, {**_OPTIONS, **_SENTINEL_OPTIONS})
    if not 1 <= len(parsed.path) <= 2:
        raise ValueError(f"{url!r}: give the service name: {SENTINEL_SCHEME}host:port/service[/db]")
    service = parsed.path[0]
    try:
        db = int(parsed.path[1]) if len(parsed.path) == 2 else 0
    except ValueError:
        raise ValueError(f"{url!r}: the database must be a number") from None
    options = {**defaults(), **{k: v for k, v in parsed.options.items() if k in _OPTIONS}}
    # The sentinels get the same timeouts, and their own credentials if any.
    sentinel_options = {k: v for k, v in options.items() if k != "health_check_interval"}
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    if "sentinel_username" in parsed.options:
        sentinel_options["username"] = parsed.options["sentinel_username"]
    if "sentinel_password" in parsed.options:
        sentinel_options["password"] = parsed.options["sentinel_password"]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        parsed.hosts, sentinel_kwargs=sentinel_options, db=db, **_credentials(parsed), **options
    )
    client = sentinel.master_for(service)
    return Clients(client, also_close=list(sentinel.sentinels))


def _cluster(url: str) -> Clients:
    parsed = _parse(url, CLUSTER_SCHEME, _OPTIONS)
    if parsed.path not in ([], ["0"]):
        raise ValueError(f"{url!r}: a cluster has only database 0; give no path")
    options = {**defaults(), **parsed.options, **_credentials(parsed)}
    nodes = [ClusterNode(host, port) for host, port in parsed.hosts]
    client = RedisCluster(startup_nodes=nodes, **options)
    return Clients(client, node_options=options)


# -- what may be shown, and what is logged ----------------------------------------


class FailureLog:
    """Logs why the store is unreachable at WARNING: the first failure, then one
    line per ``interval_s`` with the count, never a line (or traceback) per request.

    Clients are only told "store unavailable": redis-py's messages name hosts,
    ports and pool settings.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = FAILURE_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = float("-inf")
        self._unlogged = 0

    def failed(self, operation: str, error: BaseException) -> None:
        now = self._clock()
        if now < self._next_at:
            self._unlogged += 1
            return
        also = f" (and {self._unlogged} more since the last report)" if self._unlogged else ""
        self._log.warning(
            "store unavailable: %s failed: %s: %s%s", operation, type(error).__name__, error, also
        )
        self._unlogged = 0
        self._next_at = now + self._interval_s


class _Logged(Protocol):
    @property
    def failures(self) -> FailureLog: ...


S = TypeVar("S", bound=_Logged)
P = ParamSpec("P")
R = TypeVar("R")


def reachable(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Turn Redis connection failures of a store method into ``Unavailable``.

    The details go to the store's :class:`FailureLog`; the client sees only
    :data:`UNAVAILABLE`.
    """

    @functools.wraps(fn)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except UNREACHABLE as e:
            self.failures.failed(fn.__name__, e)
            raise Unavailable(UNAVAILABLE) from e

    return call


async def persistence_warning(url: str) -> str | None:
    """Why nonces stored at ``url`` would not survive a restart, or ``None``.

    Asks the server (``CONFIG GET appendonly`` and ``save``). ``None`` too when
    it cannot tell: ``CONFIG`` disabled or renamed, or the server unreachable.
    """
    clients = connect(url)
    try:
        config: dict[Any, Any] = {}
        for name in ("appendonly", "save"):
            config.update(await clients.client.config_get(name))
    except (ResponseError, *UNREACHABLE):
        return None
    finally:
        await clients.client.aclose()
        for other in clients.also_close:
            await other.aclose()
    appendonly = _text(config.get("appendonly", config.get(b"appendonly", "")))
    save = _text(config.get("save", config.get(b"save", "")))
    if appendonly.lower() != "no":
        return None
    snapshots = f"RDB snapshots only (save {save!r})" if save else "no persistence at all"
    return (
        f"Redis reports appendonly no, {snapshots}: nonces are the replay protection of "
        "signed requests, and a restart that loses them lets a signed request seen in the "
        "last 15 minutes be accepted once more. Run Redis with appendonly yes"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
