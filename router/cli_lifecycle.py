"""The command-line options of the execution lifecycle (router/lifecycle), for router/cli.

``serve``: ``--execution-retention``, ``--invoke-timeout``, ``--callback-url``,
``--callback-secret`` (each also from its ``FLOW_ROUTER_*`` variable).
``executor``: ``--mode``, ``--duration-ms``, ``--fail VERSION=RATIO``, ``--seed``.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol
from urllib.parse import urlsplit

from router.executor import Behaviour
from router.lifecycle.callback import secret_from_flag
from router.service import Settings

_SETTINGS = Settings()
_EXECUTOR = Behaviour()


class Options(Protocol):
    """What router/cli's ``_Options`` offers (flag, environment variable, default)."""

    def text(self, name: str, default: str | None, help: str, **kwargs: Any) -> None: ...
    def number(
        self, name: str, kind: type[int] | type[float], default: float | None, help: str
    ) -> None: ...


def add_serve_arguments(option: Options) -> None:
    option.number(
        "execution-retention", int, _SETTINGS.execution_retention_s,
        "seconds an execution's record is kept after its start (named or not); an "
        "execution still running then is no longer polled",
    )  # fmt: skip
    option.number(
        "invoke-timeout", float, _SETTINGS.invoke_timeout_s,
        "seconds InvokeFlow and StartSyncExecution wait for an asynchronous execution's "
        "final status before answering a timeout error (the execution keeps running)",
    )  # fmt: skip
    option.text(
        "callback-url", None,
        "base URL at which executors reach the gateway replicas (e.g. http://gw:8080); "
        "start bodies then carry a per-execution \"callback\" URL under it, and "
        "executions are polled only as a safety net; default: polling only",
        metavar="URL",
    )  # fmt: skip
    option.text(
        "callback-secret", None,
        "secret of the callback tokens (16 characters or more), the same on every "
        "replica; default: a random one created once and kept in the store",
        metavar="SECRET",
    )  # fmt: skip


def serve_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Settings fields, Config fields) of :func:`add_serve_arguments`, checked."""
    if args.execution_retention < 1:
        raise ValueError("--execution-retention must be at least 1 second")
    if args.invoke_timeout <= 0:
        raise ValueError("--invoke-timeout must be positive")
    url = args.callback_url or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"--callback-url {url!r} must be an http(s) URL without a query")
    secret = args.callback_secret or None
    if secret is not None:
        if url is None:
            raise ValueError("--callback-secret needs --callback-url")
        secret_from_flag(secret)  # raises ValueError when too short
    settings = {
        "execution_retention_s": args.execution_retention,
        "invoke_timeout_s": args.invoke_timeout,
    }
    return settings, {"callback_url": url, "callback_secret": secret}


def _fail(item: str) -> tuple[str, float]:
    version, equals, ratio = item.partition("=")
    try:
        share = float(ratio)
    except ValueError:
        share = -1.0
    if not equals or not version or not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{item!r}: expected VERSION=RATIO with RATIO in 0..1")
    return version, share


def _duration(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of milliseconds")
    return int(value)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=("sync", "async"), default="sync",
        help="sync: the start reply is final; async: it is Running and the run ends "
        "--duration-ms later (default: sync)",
    )  # fmt: skip
    parser.add_argument(
        "--duration-ms", type=_duration, default=_EXECUTOR.duration_ms,
        help=f"async: milliseconds from a run's start to its end "
        f"(default: {_EXECUTOR.duration_ms})",
    )  # fmt: skip
    parser.add_argument(
        "--fail", type=_fail, action="append", default=[], metavar="VERSION=RATIO",
        help="share (0..1) of VERSION's runs that end Failed; repeatable (default: none)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the --fail draws (default: 0)")


def executor_behaviour(args: argparse.Namespace) -> Behaviour:
    """The :class:`~router.executor.Behaviour` of :func:`add_executor_arguments`."""
    return Behaviour(args.mode, args.duration_ms, dict(args.fail), args.seed)
