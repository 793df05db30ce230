"""``flow-router serve`` and ``flow-router executor``.

Every ``serve`` option can also come from a ``FLOW_ROUTER_*`` environment
variable; a flag given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from router import __version__
from router.config import Config
from router.forward import Timeouts, UpstreamTemplate
from router.model import Api
from router.service import Settings
from router.workers import default_workers, run_worker, supervise


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"FLOW_ROUTER_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"flow-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (CloudFlow + Bedrock APIs on one port)")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="[FLOW_ROUTER_HOST]")
    serve.add_argument(
        "--port", type=int, default=int(_env("PORT", "8080") or 8080), help="[FLOW_ROUTER_PORT]"
    )
    serve.add_argument(
        "--store",
        default=_env("STORE", "memory://"),
        help="memory:// (embedded, default), redis://host:port/db or rediss://… "
        "[FLOW_ROUTER_STORE]",
    )
    serve.add_argument(
        "--key-prefix",
        default=_env("KEY_PREFIX", "fr"),
        help="Redis key prefix [FLOW_ROUTER_KEY_PREFIX]",
    )
    serve.add_argument(
        "--upstream",
        default=_env("UPSTREAM"),
        help="executor URL template with {flow}, {flowId}, {version}, {alias}; "
        "default: the built-in reference executor [FLOW_ROUTER_UPSTREAM]",
    )
    serve.add_argument(
        "--connect-timeout",
        type=float,
        default=float(_env("CONNECT_TIMEOUT", "2") or 2),
        help="seconds to connect to an executor [FLOW_ROUTER_CONNECT_TIMEOUT]",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=float(_env("TIMEOUT", "30") or 30),
        help="seconds for a whole executor call [FLOW_ROUTER_TIMEOUT]",
    )
    serve.add_argument("--region", default=_env("REGION", "us-east-1"), help="[FLOW_ROUTER_REGION]")
    serve.add_argument(
        "--account-id", default=_env("ACCOUNT_ID", "123456789012"), help="[FLOW_ROUTER_ACCOUNT_ID]"
    )
    serve.add_argument(
        "--idempotency-ttl",
        type=int,
        default=int(_env("IDEMPOTENCY_TTL", "28800") or 28800),
        help="seconds a Bedrock clientToken is remembered (default 8 h) "
        "[FLOW_ROUTER_IDEMPOTENCY_TTL]",
    )
    serve.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "INFO"), help="[FLOW_ROUTER_LOG_LEVEL]"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "0") or 0),
        help="processes sharing the port; default: number of cores on Redis, 1 on the "
        "memory store [FLOW_ROUTER_WORKERS]",
    )
    serve.add_argument(
        "--n-way",
        action="store_true",
        default=_env("N_WAY", "") not in ("", "0", "false"),
        help="flow-router extension: let a CloudFlow alias route to more than the 2 versions "
        "CloudFlow documents, up to --max-routes [FLOW_ROUTER_N_WAY]",
    )
    serve.add_argument(
        "--max-routes",
        type=int,
        default=int(_env("MAX_ROUTES", "100") or 100),
        help="quota of versions per alias with --n-way (default 100) [FLOW_ROUTER_MAX_ROUTES]",
    )
    serve.add_argument(
        "--cache-check-interval",
        type=float,
        default=float(_env("CACHE_CHECK_INTERVAL", "2") or 2),
        help="seconds between route-cache revision checks, the staleness bound when a "
        "change announcement is lost [FLOW_ROUTER_CACHE_CHECK_INTERVAL]",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        default=_env("ACCESS_LOG", "") not in ("", "0", "false"),
        help="log every request (off by default: it costs throughput) [FLOW_ROUTER_ACCESS_LOG]",
    )

    executor = sub.add_parser("executor", help="run the reference (echo) executor alone")
    executor.add_argument("--host", default="127.0.0.1")
    executor.add_argument("--port", type=int, default=9090)
    return parser


MAX_ROUTES_LIMIT = 10_000
CLOUDFLOW_MAX_ROUTES = 2  # the documented limit of RoutingConfigurations


def config_from_args(args: argparse.Namespace) -> Config:
    if args.upstream is not None:
        UpstreamTemplate(args.upstream)  # fail at start-up, not on the first execution
    if not 1 <= args.max_routes <= MAX_ROUTES_LIMIT:
        raise ValueError(f"--max-routes must be between 1 and {MAX_ROUTES_LIMIT}")
    max_routes = args.max_routes if args.n_way else CLOUDFLOW_MAX_ROUTES
    if args.cache_check_interval <= 0:
        raise ValueError("--cache-check-interval must be positive")
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
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "INFO")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "executor":
        from router.executor import make_executor_app

        web.run_app(make_executor_app(), host=args.host, port=args.port, print=None)
        return 0
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"flow-router: {e}", file=sys.stderr)
        return 2
    workers = args.workers or default_workers(config.store)
    if workers > 1 and config.store.startswith("memory"):
        print(
            "flow-router: the memory store lives in one process; use --workers 1 "
            "or a shared store (--store redis://…)",
            file=sys.stderr,
        )
        return 2
    if workers > 1 and config.upstream is None:
        print(
            "flow-router: the built-in reference executor is per process; give --upstream "
            "when running several workers",
            file=sys.stderr,
        )
        return 2
    logging.getLogger("flow_router").info(
        "flow-router %s listening on http://%s:%d (store %s, %d worker%s)",
        __version__, config.host, config.port, config.store, workers, "s" if workers > 1 else "",
    )  # fmt: skip
    if workers == 1:
        run_worker(config, reuse_port=False, access_log=args.access_log)
        return 0
    return supervise(config, workers, access_log=args.access_log, log_level=level.upper())
