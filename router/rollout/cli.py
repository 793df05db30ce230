"""``flow-router rollout start|status|promote|pause|resume|abort FLOW ALIAS``.

A client of the ``/v1`` API (router/rollout/api, docs/rollout-api.md) on
``--endpoint``. With ``--access-key-id`` and ``--secret-access-key`` (or
``FLOW_ROUTER_ACCESS_KEY_ID`` / ``FLOW_ROUTER_SECRET_ACCESS_KEY``) every request
is signed with AWS SigV4 for the service ``flow-router``, as a gateway started
with ``--credentials`` requires.

Exit status: 0 done (``status --watch``: the rollout succeeded); 1 the API
answered an error (printed with its code); 2 a usage error or no answer from the
gateway; 3 ``status --watch`` saw the rollout end RolledBack or Aborted; 130
interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from router.rollout import view
from router.rollout.client import (
    DEFAULT_ENDPOINT,
    DEFAULT_REGION,
    DEFAULT_TIMEOUT_S,
    ApiError,
    Client,
    ClientError,
    Keys,
)

ENDPOINT_ENV = "FLOW_ROUTER_ENDPOINT"
ACCESS_KEY_ENV = "FLOW_ROUTER_ACCESS_KEY_ID"
SECRET_KEY_ENV = "FLOW_ROUTER_SECRET_ACCESS_KEY"
ON_INCONCLUSIVE = ("pause", "rollback", "promote")
WEBHOOK_TYPES = ("event", "confirm-promotion")
WATCH_INTERVAL_S = 2.0
WATCH_INTERVAL_RANGE = (0.2, 60.0)  # bounded: no busy loop, no view that never moves
WATCH_FAILURES = 5  # consecutive polls without an answer before --watch gives up
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: the redraw on a terminal

OK, API_ERROR, USAGE, ROLLED_BACK, INTERRUPTED = 0, 1, 2, 3, 130

_ACTIONS = {
    "start": "start a rollout of ALIAS to --target-version",
    "status": "show the rollout of ALIAS (--watch: redraw it live until it finishes)",
    "promote": "skip the analysis of the current step (--full: straight to 100%%)",
    "pause": "stop moving the weights (the analysis goes on: a bad canary still rolls back)",
    "resume": "resume a paused rollout",
    "abort": "abort: the alias gets back exactly the routes it had before",
}


DESCRIPTION = (
    "A client of the gateway's /v1 rollout API on --endpoint. With --access-key-id and "
    f"--secret-access-key ({ACCESS_KEY_ENV}, {SECRET_KEY_ENV}) every request is signed "
    "with AWS SigV4 for the service flow-router, as a gateway started with --credentials "
    "requires. Exit status: 0 done (status --watch: the rollout succeeded), 1 the API "
    "answered an error, 2 a usage error or no answer, 3 status --watch saw the rollout "
    "end RolledBack or Aborted, 130 interrupted."
)


class UsageError(ValueError):
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``flow-router rollout …``, under the main parser's subcommands."""
    rollout = sub.add_parser(
        "rollout",
        help="start, follow and steer progressive rollouts of an alias (the /v1 API)",
        description=DESCRIPTION,
    )
    actions = rollout.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    for name, help in _ACTIONS.items():
        action = actions.add_parser(name, help=help, description=help)
        action.add_argument("flow", metavar="FLOW", help="the flow's name")
        action.add_argument("alias", metavar="ALIAS", help="the alias's name")
        _add_connection(action)
        if name == "start":
            _add_start(action)
        elif name == "status":
            action.add_argument("--watch", action="store_true", help="redraw until it finishes")
            action.add_argument(
                "--interval", type=float, default=WATCH_INTERVAL_S,
                help=f"seconds between refreshes with --watch, {WATCH_INTERVAL_RANGE[0]:g} "
                f"to {WATCH_INTERVAL_RANGE[1]:g} (default: {WATCH_INTERVAL_S:g})",
            )  # fmt: skip
        elif name == "promote":
            action.add_argument("--full", action="store_true", help="route 100%% to the target now")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--endpoint", default=env(ENDPOINT_ENV, DEFAULT_ENDPOINT),
        help=f"the gateway's URL (default: {DEFAULT_ENDPOINT}) [{ENDPOINT_ENV}]",
    )  # fmt: skip
    parser.add_argument(
        "--access-key-id", default=env(ACCESS_KEY_ENV),
        help=f"sign requests with this key (one of the gateway's --credentials) [{ACCESS_KEY_ENV}]",
    )  # fmt: skip
    parser.add_argument(
        "--secret-access-key", default=env(SECRET_KEY_ENV),
        help=f"the key's secret; prefer the environment variable [{SECRET_KEY_ENV}]",
    )  # fmt: skip
    parser.add_argument(
        "--region", default=DEFAULT_REGION,
        help=f"region in the signature's scope; any is accepted (default: {DEFAULT_REGION})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S,
        help=f"seconds per request (default: {DEFAULT_TIMEOUT_S:g})",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the status JSON as answered")


def _add_start(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--target-version", help="the version to roll out (targetVersion; required)")
    add("--steps", type=_weights, help="canary weights of the steps, e.g. 5,25,50 (stepWeights)")
    add("--min-step-seconds", type=_number, help="minStepSeconds")
    add("--min-samples", type=int, help="minSamples: canary executions a step needs")
    add("--max-step-seconds", type=_number, help="maxStepSeconds")
    add("--on-inconclusive", choices=ON_INCONCLUSIVE, help="onInconclusive")
    add(
        "--require-approval", action=argparse.BooleanOptionalAction, default=None,
        help="requireApproval: wait in WaitingPromotion after the last step until promote",
    )  # fmt: skip
    add("--alpha", type=_number, help="analysis.alpha: the rule's level")
    add("--max-failure-ratio", type=_number, help="analysis.maxFailureRatio: a cap, 0..1")
    add("--slow-seconds", type=_number, help="analysis.slowSeconds")
    add(
        "--webhook", action="append", type=_webhook, default=[], metavar="TYPE=URL",
        help=f"a webhook, TYPE one of {', '.join(WEBHOOK_TYPES)} (repeatable)",
    )  # fmt: skip
    add(
        "--body", metavar="JSON",
        help="the request body as JSON (or @FILE); the flags above override its fields",
    )  # fmt: skip


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _weights(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 5,25,50") from None


def _webhook(text: str) -> dict[str, str]:
    kind, sep, url = text.partition("=")
    if not sep or kind not in WEBHOOK_TYPES or not url:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not TYPE=URL with TYPE one of {', '.join(WEBHOOK_TYPES)}"
        )
    return {"type": kind, "url": url}


def start_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body: ``--body``, then every flag given over it (server defaults for
    the rest: the CLI sends only what it was told)."""
    body: dict[str, Any] = {}
    if args.body is not None:
        text = args.body
        if text.startswith("@"):
            try:
                with open(text[1:], "rb") as file:
                    text = file.read()
            except OSError as e:
                raise UsageError(f"cannot read --body {args.body}: {e.strerror}") from None
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise UsageError("--body is not valid JSON") from None
        if not isinstance(body, dict):
            raise UsageError("--body must be a JSON object")
    fields = {
        "targetVersion": args.target_version,
        "stepWeights": args.steps,
        "minStepSeconds": args.min_step_seconds,
        "minSamples": args.min_samples,
        "maxStepSeconds": args.max_step_seconds,
        "onInconclusive": args.on_inconclusive,
        "requireApproval": args.require_approval,
    }
    body.update({k: v for k, v in fields.items() if v is not None})
    analysis = {
        "alpha": args.alpha,
        "maxFailureRatio": args.max_failure_ratio,
        "slowSeconds": args.slow_seconds,
    }
    given = {k: v for k, v in analysis.items() if v is not None}
    if given:
        base = body.get("analysis")
        body["analysis"] = {**(base if isinstance(base, dict) else {}), **given}
    if args.webhook:
        base = body.get("webhooks")
        body["webhooks"] = [*(base if isinstance(base, list) else []), *args.webhook]
    if "targetVersion" not in body:
        raise UsageError("--target-version is required (or targetVersion in --body)")
    return body


def client_from(args: argparse.Namespace) -> Client:
    key, secret = args.access_key_id, args.secret_access_key
    if bool(key) != bool(secret):
        raise UsageError(
            "signing needs both --access-key-id and --secret-access-key "
            f"({ACCESS_KEY_ENV}, {SECRET_KEY_ENV})"
        )
    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    keys = Keys(key, secret) if key else None
    return Client(args.endpoint, keys, timeout_s=args.timeout, region=args.region)


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run one ``rollout`` action; the process's exit status."""
    out = out or sys.stdout
    command: str = args.rollout_command
    try:
        client = client_from(args)
        if command == "status" and args.watch:
            return watch(client, args, out, sleep)
        status = _call(client, command, args)
    except UsageError as e:
        return _fail(f"{e}", USAGE)
    except ValueError as e:  # the endpoint URL
        return _fail(f"{e}", USAGE)
    except ApiError as e:
        return _fail(f"{e.status} {e.code}: {e.message}", API_ERROR)
    except ClientError as e:
        return _fail(f"{e}", USAGE)
    except KeyboardInterrupt:
        return INTERRUPTED
    out.write(_text(status, args.json) + "\n")
    return OK


def _call(client: Client, command: str, args: argparse.Namespace) -> dict[str, Any]:
    flow, alias = args.flow, args.alias
    if command == "start":
        return client.call("PUT", flow, alias, body=start_body(args))
    if command == "status":
        return client.call("GET", flow, alias)
    body = {"full": True} if command == "promote" and args.full else None
    return client.call("POST", flow, alias, command, body)


def _text(status: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return orjson.dumps(status).decode()
    return view.render(status)


def watch(
    client: Client, args: argparse.Namespace, out: TextIO, sleep: Callable[[float], None]
) -> int:
    """Poll and redraw until the rollout finishes: in place on a terminal, else each
    view that differs from the last one, once."""
    low, high = WATCH_INTERVAL_RANGE
    if not low <= args.interval <= high:
        raise UsageError(f"--interval must be between {low:g} and {high:g} seconds")
    terminal = out.isatty()
    last = None
    failures = 0
    while True:
        try:
            status = client.call("GET", args.flow, args.alias)
            failures = 0
        except (ClientError, ApiError) as e:
            if isinstance(e, ApiError) and e.status != 503:  # only an outage is passing
                raise
            failures += 1
            if failures >= WATCH_FAILURES:
                raise
            print(f"flow-router: {e} (retrying, {failures}/{WATCH_FAILURES})", file=sys.stderr)
            sleep(args.interval)
            continue
        text = _text(status, args.json)
        if terminal:
            out.write(CLEAR + text + "\n")
        elif text != last:
            out.write(text + ("\n" if args.json else "\n\n"))
        out.flush()
        last = text
        if view.finished(status):
            return OK if status.get("phase") == "Succeeded" else ROLLED_BACK
        sleep(args.interval)


def _fail(message: str, code: int) -> int:
    print(f"flow-router: {message}", file=sys.stderr)
    return code
