"""``flow-router serve`` and ``flow-router executor``.

Every ``serve`` option can also come from a ``FLOW_ROUTER_*`` environment
variable; a flag given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from router import __version__, cli_lifecycle
from router.auth import guard, load_credentials
from router.breaker import VersionLimits
from router.config import Config
from router.forward import Timeouts, UpstreamTemplate
from router.model import Api
from router.service import Settings
from router.store import is_in_process_url
from router.workers import ListenError, run_executor, run_worker, supervise, worker_count

_DEFAULTS = Config()  # every default below is read from here, so they cannot drift
_SETTINGS = _DEFAULTS.settings


def _with_default(help: str, value: object) -> str:
    """``help`` ending with the default: ``2`` for ``2.0``, ``0`` for "none".

    Joined into a closing parenthesis: "(0: no limit; default: 100)".
    """
    if value is None:
        value = 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if help.endswith(")"):
        return f"{help[:-1]}; default: {value})"
    return f"{help} (default: {value})"


class _Options:
    """Adds ``--some-name`` options that default to ``FLOW_ROUTER_SOME_NAME``.

    The help of an option with a default ends ``(default: …)``, from the value.
    """

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    @staticmethod
    def env(name: str) -> str:
        return "FLOW_ROUTER_" + name.upper().replace("-", "_")

    def text(self, name: str, default: str | None, help: str, **kwargs: Any) -> None:
        env = self.env(name)
        shown = help if default is None else _with_default(help, default)
        self.parser.add_argument(
            f"--{name}",
            default=os.environ.get(env, default),
            help=f"{shown} [{env}]",
            **kwargs,
        )

    def number(
        self, name: str, kind: type[int] | type[float], default: float | None, help: str
    ) -> None:
        env = self.env(name)
        self.parser.add_argument(
            f"--{name}",
            type=kind,
            default=kind(os.environ.get(env) or default or 0),
            help=f"{_with_default(help, default)} [{env}]",
        )

    def switch(self, name: str, help: str) -> None:
        env = self.env(name)
        self.parser.add_argument(
            f"--{name}",
            action="store_true",
            default=os.environ.get(env, "") not in ("", "0", "false"),
            help=f"{help} [{env}]",
        )


_VERSION = f"flow-router {__version__}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_VERSION)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (CloudFlow + Bedrock APIs on one port)")
    serve.add_argument("--version", action="version", version=_VERSION)
    option = _Options(serve)
    d = _DEFAULTS
    option.text("host", d.host, "address to listen on")
    option.number("port", int, d.port, "port for both APIs, /metrics and health")
    option.text(
        "store", d.store,
        "memory:// (embedded), redis://host:port/db, rediss://…, "
        "redis+sentinel://host:port[,host:port]/service[/db] or "
        "redis+cluster://host:port[,host:port]; timeouts as URL options, e.g. "
        "?socket_timeout=2 (see docs/operations.md)",
    )  # fmt: skip
    option.text("key-prefix", d.key_prefix, "Redis key prefix")
    option.text(
        "upstream", d.upstream,
        "executor URL template with {flow}, {flowId}, {version}, {alias}; "
        "default: the built-in reference executor",
    )  # fmt: skip
    option.number(
        "connect-timeout", float, d.timeouts.connect_s, "seconds to connect to an executor"
    )
    option.number("timeout", float, d.timeouts.total_s, "seconds for a whole executor call")
    option.text("region", d.region, "region in Bedrock ARNs")
    option.text("account-id", d.account_id, "account id in Bedrock ARNs")
    option.number(
        "idempotency-ttl", int, d.idempotency_ttl_s, "seconds a Bedrock clientToken is remembered"
    )
    option.text("log-level", "INFO", "DEBUG, INFO, WARNING or ERROR")
    option.number(
        "workers", int, 0,
        "processes sharing the port; 0: one per core on Redis with --upstream, else 1",
    )  # fmt: skip
    option.switch(
        "n-way",
        "flow-router extension: let a CloudFlow alias route to more than the 2 versions "
        "CloudFlow documents, up to --max-routes",
    )
    option.number("max-routes", int, N_WAY_MAX_ROUTES, "quota of versions per alias with --n-way")
    option.number(
        "cache-check-interval", float, _SETTINGS.cache_check_interval_s,
        "seconds between route-cache revision checks, the staleness bound when a "
        "change announcement is lost",
    )  # fmt: skip
    option.number(
        "definition-cache-bytes", int, _SETTINGS.definition_cache_bytes,
        "bytes of version definitions each process keeps for execution answers, least "
        "recently used dropped first",
    )  # fmt: skip
    option.switch("access-log", "log every request (off by default: it costs throughput)")
    option.text(
        "credentials", None,
        "JSON object of access key id -> secret; when given, every API request must be "
        "signed (CloudFlow RPC v1 / ACS3, Bedrock SigV4)",
        metavar="PATH",
    )  # fmt: skip
    option.switch(
        "insecure",
        "without --credentials, listen on a non-loopback address anyway, accepting "
        "unsigned requests from anyone who can reach it",
    )
    _add_limit_arguments(option)
    _add_quota_arguments(option)
    cli_lifecycle.add_serve_arguments(option)

    executor = sub.add_parser("executor", help="run the reference (echo) executor alone")
    executor.add_argument("--version", action="version", version=_VERSION)
    executor.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    executor.add_argument("--port", type=int, default=9090, help="(default: 9090)")
    cli_lifecycle.add_executor_arguments(executor)
    return parser


def _add_limit_arguments(option: _Options) -> None:
    """Executor guards (router/breaker), client limits (router/limits), draining."""
    number = option.number
    d = _DEFAULTS
    number(
        "max-inflight-per-version", int, d.version_limits.max_inflight,
        "executions in flight per flow version and process; more wait until --timeout, "
        "then fail unsent (0: no limit)",
    )  # fmt: skip
    number(
        "breaker-failures", int, d.version_limits.breaker_failures,
        "consecutive failures of a version that open its circuit: its executions then fail "
        "at once, unsent, until a probe succeeds (0: no breaker)",
    )  # fmt: skip
    number(
        "breaker-reset", float, d.version_limits.breaker_reset_s,
        "seconds an open circuit waits before letting one probe through",
    )  # fmt: skip
    number("max-body-bytes", int, d.max_body_bytes, "largest request body accepted")
    number("body-timeout", float, d.body_timeout_s, "seconds a client has to send a request body")
    number(
        "idle-timeout", float, d.idle_timeout_s,
        "seconds a connection may stay idle, and the time a client has to send a request's "
        "headers",
    )  # fmt: skip
    number(
        "drain-timeout", float, d.drain_timeout_s,
        "on SIGTERM: seconds to let requests in progress finish before exiting",
    )  # fmt: skip
    number(
        "send-timeout", float, d.send_timeout_s,
        "seconds a client may read nothing of a large answer before its connection is "
        "closed",
    )  # fmt: skip
    number(
        "rate-limit", float, d.rate_limit,
        "requests/s each access key may make, across all replicas on Redis; needs "
        "--credentials (0: no limit)",
    )  # fmt: skip
    number(
        "rate-burst", int, d.rate_burst,
        "requests an access key may make at once above its rate (0: one second's worth)",
    )  # fmt: skip
    number(
        "auth-store-timeout", float, d.auth_store_timeout_s,
        "seconds a signed request waits for the store to record its nonce or take a "
        "rate-limit token; past it, or when the store fails, requests are decided without "
        f"the store for {guard.RETRY_S:g} s as --auth-store-failure says",
    )  # fmt: skip
    option.text(
        "auth-store-failure", d.auth_store_failure,
        "open: let such requests in (no rate limit, replays caught per process only); "
        "closed: refuse them as unavailable",
        choices=guard.FAILURES,
    )  # fmt: skip


def _limit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Config fields of :func:`_add_limit_arguments`, checked."""
    if args.max_body_bytes < 1:
        raise ValueError("--max-body-bytes must be at least 1")
    for name in ("body_timeout", "idle_timeout", "drain_timeout", "send_timeout"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.rate_limit < 0 or args.rate_burst < 0:
        raise ValueError("--rate-limit and --rate-burst must not be negative")
    if args.rate_limit and not args.credentials:
        raise ValueError("--rate-limit is per access key: it needs --credentials")
    if args.auth_store_timeout <= 0:
        raise ValueError("--auth-store-timeout must be positive")
    if args.auth_store_failure not in guard.FAILURES:  # from the environment: not checked yet
        raise ValueError(f"--auth-store-failure must be one of {', '.join(guard.FAILURES)}")
    return {
        "rate_limit": args.rate_limit or None,
        "rate_burst": args.rate_burst,
        "auth_store_timeout_s": args.auth_store_timeout,
        "auth_store_failure": args.auth_store_failure,
        "version_limits": VersionLimits(
            max_inflight=args.max_inflight_per_version,
            breaker_failures=args.breaker_failures,
            breaker_reset_s=args.breaker_reset,
        ),
        "max_body_bytes": args.max_body_bytes,
        "body_timeout_s": args.body_timeout,
        "idle_timeout_s": args.idle_timeout,
        "drain_timeout_s": args.drain_timeout,
        "send_timeout_s": args.send_timeout,
    }


def _add_quota_arguments(option: _Options) -> None:
    """Quotas on what the store holds, enforced atomically by the store."""
    for name, what in (
        ("max-flows", "flows in the store"),
        ("max-versions-per-flow", "versions of one flow that exist at a time"),
        ("max-aliases-per-flow", "aliases of one flow"),
    ):
        option.number(
            name,
            int,
            getattr(_SETTINGS, name.replace("-", "_")),
            f"quota: the most {what}; a create beyond it fails with the dialect's quota "
            "error (0: no limit)",
        )


class _Quotas(TypedDict):
    max_flows: int | None
    max_versions_per_flow: int | None
    max_aliases_per_flow: int | None


def _quota_settings(args: argparse.Namespace) -> _Quotas:
    """The Settings fields of :func:`_add_quota_arguments`, checked; 0 means no limit."""
    for name in _Quotas.__annotations__:
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 (no limit) or more")
    return _Quotas(
        max_flows=args.max_flows or None,
        max_versions_per_flow=args.max_versions_per_flow or None,
        max_aliases_per_flow=args.max_aliases_per_flow or None,
    )


MAX_ROUTES_LIMIT = 10_000
N_WAY_MAX_ROUTES = 100  # --max-routes: the quota with --n-way (Config holds the result)
CLOUDFLOW_MAX_ROUTES = _SETTINGS.max_routes[Api.CLOUDFLOW]  # RoutingConfigurations' limit


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name we would have to resolve: assume it is reachable
        return False


def check_exposure(host: str, credentials: Mapping[str, str] | None, insecure: bool) -> None:
    """Refuse to serve unauthenticated on an address other machines can reach."""
    if credentials is None and not insecure and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without --credentials: anyone who can reach it "
            "could change flows and run executions unsigned. Give --credentials PATH "
            "(FLOW_ROUTER_CREDENTIALS), listen on 127.0.0.1, or pass --insecure "
            "(FLOW_ROUTER_INSECURE=1) if something in front of the gateway authenticates"
        )
    if credentials is None and not is_loopback(host):
        logging.getLogger("flow_router").warning(
            "--insecure: serving unsigned requests on %s, reachable from other machines", host
        )


def config_from_args(args: argparse.Namespace) -> Config:
    if args.upstream is not None:
        UpstreamTemplate(args.upstream)  # fail at start-up, not on the first execution
    if not 1 <= args.max_routes <= MAX_ROUTES_LIMIT:
        raise ValueError(f"--max-routes must be between 1 and {MAX_ROUTES_LIMIT}")
    max_routes = args.max_routes if args.n_way else CLOUDFLOW_MAX_ROUTES
    if args.cache_check_interval <= 0:
        raise ValueError("--cache-check-interval must be positive")
    if args.definition_cache_bytes < 0:
        raise ValueError("--definition-cache-bytes must not be negative")
    credentials = load_credentials(args.credentials) if args.credentials else None
    check_exposure(args.host, credentials, args.insecure)
    lifecycle, callbacks = cli_lifecycle.serve_settings(args)
    return Config(
        host=args.host,
        port=args.port,
        store=args.store,
        key_prefix=args.key_prefix,
        upstream=args.upstream,
        timeouts=Timeouts(connect_s=args.connect_timeout, total_s=args.timeout),
        region=args.region,
        account_id=args.account_id,
        idempotency_ttl_s=args.idempotency_ttl,
        settings=Settings(
            max_routes={Api.CLOUDFLOW: max_routes, Api.BEDROCK: 1},
            cache_check_interval_s=args.cache_check_interval,
            definition_cache_bytes=args.definition_cache_bytes,
            **_quota_settings(args),
            **lifecycle,
        ),
        credentials=credentials,
        insecure=args.insecure,
        **callbacks,
        **_limit_settings(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "INFO")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        if args.command == "executor":
            run_executor(args.host, args.port, cli_lifecycle.executor_behaviour(args))
            return 0
        return _serve(args, level.upper())
    except ListenError as e:
        print(f"flow-router: {e}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, level: str) -> int:
    try:
        config = config_from_args(args)
        workers = worker_count(args.workers, config)
    except ValueError as e:
        print(f"flow-router: {e}", file=sys.stderr)
        return 2
    if config.credentials is not None and not is_in_process_url(config.store):
        _warn_without_persistence(config.store)
    if workers == 1:
        run_worker(config, reuse_port=False, access_log=args.access_log, announce=True)
        return 0
    return supervise(config, workers, access_log=args.access_log, log_level=level)


def _warn_without_persistence(url: str) -> None:
    """Nonces (replay protection) live in Redis: say so if Redis would lose them."""
    from router.store.redis_client import persistence_warning

    warning = asyncio.run(persistence_warning(url))
    if warning is not None:
        logging.getLogger("flow_router").warning("--credentials: %s", warning)
