"""The start request's body → a :class:`RolloutSpec` and webhooks, or ``InvalidArgument``.

Only ``targetVersion`` is required; the defaults are RolloutSpec's (docs/rollouts.md).
Unknown fields are refused, so a misspelt option is not silently ignored. Ranges
are checked once, by RolloutSpec and Analysis; this module checks JSON types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from router.errors import InvalidArgument, MissingParameter
from router.rollout.decision import Analysis, OnInconclusive, RolloutSpec
from router.rollout.state import Webhook

FIELDS = frozenset(
    {
        "targetVersion",
        "stepWeights",
        "minStepSeconds",
        "minSamples",
        "maxStepSeconds",
        "onInconclusive",
        "requireApproval",
        "analysis",
        "webhooks",
    }
)
ANALYSIS_FIELDS = frozenset({"alpha", "maxFailureRatio", "slowSeconds"})
WEBHOOK_TYPES = ("event", "confirm-promotion")
MAX_WEBHOOKS = 10
DEFAULT_MAX_STEP_SECONDS = 3600.0


def parse(body: Any) -> tuple[RolloutSpec, tuple[Webhook, ...]]:
    if not isinstance(body, Mapping):
        raise InvalidArgument("the body must be a JSON object")
    _known(body, FIELDS, "")
    target = body.get("targetVersion")
    if target is None or target == "":
        raise MissingParameter("targetVersion")
    if isinstance(target, bool) or not isinstance(target, str | int):
        raise InvalidArgument("targetVersion must be a version number", "targetVersion")
    target = str(target)
    if not target.isascii() or not target.isdigit() or int(target) < 1 or len(target) > 18:
        raise InvalidArgument("targetVersion must be a version number", "targetVersion")
    kwargs: dict[str, Any] = {"target_version": str(int(target))}
    if "stepWeights" in body:
        weights = body["stepWeights"]
        if not isinstance(weights, list) or not all(_is_int(w) for w in weights):
            raise InvalidArgument("stepWeights must be a list of integers", "stepWeights")
        kwargs["step_weights"] = tuple(weights)
    min_step = _number(body, "minStepSeconds")
    if min_step is not None:
        kwargs["min_step_seconds"] = min_step
    if "minSamples" in body:
        if not _is_int(body["minSamples"]):
            raise InvalidArgument("minSamples must be an integer", "minSamples")
        kwargs["min_samples"] = body["minSamples"]
    max_step = _number(body, "maxStepSeconds")
    kwargs["max_step_seconds"] = (
        max_step if max_step is not None else max(DEFAULT_MAX_STEP_SECONDS, min_step or 0.0)
    )
    if "onInconclusive" in body:
        choice = body["onInconclusive"]
        if choice not in {o.value for o in OnInconclusive}:
            raise InvalidArgument(
                "onInconclusive must be pause, rollback or promote", "onInconclusive"
            )
        kwargs["on_inconclusive"] = OnInconclusive(choice)
    if "requireApproval" in body:
        if not isinstance(body["requireApproval"], bool):
            raise InvalidArgument("requireApproval must be true or false", "requireApproval")
        kwargs["require_approval"] = body["requireApproval"]
    if body.get("analysis") is not None:
        kwargs["analysis"] = _analysis(body["analysis"])
    return RolloutSpec(**kwargs), _webhooks(body.get("webhooks"))


def _analysis(raw: Any) -> Analysis:
    if not isinstance(raw, Mapping):
        raise InvalidArgument("analysis must be an object", "analysis")
    _known(raw, ANALYSIS_FIELDS, "analysis.")
    alpha = _number(raw, "alpha", "analysis.")
    return Analysis(
        alpha=0.01 if alpha is None else alpha,
        max_failure_ratio=_number(raw, "maxFailureRatio", "analysis."),
        slow_seconds=_number(raw, "slowSeconds", "analysis."),
    )


def _webhooks(raw: Any) -> tuple[Webhook, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_WEBHOOKS:
        raise InvalidArgument(f"webhooks must be a list of at most {MAX_WEBHOOKS}", "webhooks")
    hooks = []
    for i, hook in enumerate(raw):
        where = f"webhooks[{i}]"
        if not isinstance(hook, Mapping):
            raise InvalidArgument(f"{where} must be an object", where)
        _known(hook, frozenset({"type", "url"}), f"{where}.")
        kind, url = hook.get("type"), hook.get("url")
        if kind not in WEBHOOK_TYPES:
            raise InvalidArgument(f"{where}.type must be event or confirm-promotion", where)
        if not isinstance(url, str) or len(url) > 2048 or not _is_http(url):
            raise InvalidArgument(f"{where}.url must be an http or https URL", f"{where}.url")
        hooks.append(Webhook(kind, url))
    return tuple(hooks)


def _is_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _known(body: Mapping[str, Any], fields: frozenset[str], prefix: str) -> None:
    for name in body:
        if name not in fields:
            raise InvalidArgument(f"unknown field {prefix}{name}", f"{prefix}{name}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], name: str, prefix: str = "") -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{prefix}{name} must be a number", f"{prefix}{name}")
    return float(value)
