"""The ``/v1`` API's error table and envelope: ``{"code", "message"}`` with a status.

Every domain error maps to one status and one code; the most specific class of
the error wins (router/dialects/common.lookup_error). The message is the error's
own, written for the caller; an unexpected exception never gets here (the
envelope answers it as a bare ``InternalError``). docs/rollout-api.md lists the
table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web

from router import errors
from router.dialects.common import lookup_error, retry_after

INTERNAL = "InternalError"
RETRY_AFTER_HEADER = "Retry-After"
UNAVAILABLE_RETRY_S = "1"  # a store outage: retrying sooner only adds load


class WrongMethod(errors.MethodNotAllowed):
    """The path exists but does not take this method; ``allowed`` goes in ``Allow``."""

    def __init__(self, method: str, path: str, allowed: Sequence[str]) -> None:
        super().__init__(f"{method} is not allowed on {path}; use {', '.join(allowed)}")
        self.allowed = tuple(allowed)


# status, code; the most specific class of an error wins.
ERRORS: Mapping[type[errors.RouterError], tuple[int, str]] = {
    errors.UnknownAction: (404, "UnknownOperation"),
    errors.MethodNotAllowed: (405, "MethodNotAllowed"),
    errors.BodyTooLarge: (413, "RequestTooLarge"),
    errors.MissingParameter: (400, "MissingParameter"),
    errors.InvalidArgument: (400, "InvalidArgument"),  # BodyTimeout, InvalidToken included
    errors.FlowNotFound: (404, "FlowNotFound"),
    errors.AliasNotFound: (404, "AliasNotFound"),
    errors.VersionNotFound: (404, "VersionNotFound"),
    errors.RolloutNotFound: (404, "RolloutNotFound"),
    errors.NotFound: (404, "NotFound"),
    errors.RolloutActive: (409, "RolloutActive"),
    errors.RolloutFinished: (409, "RolloutFinished"),
    errors.AlreadyExists: (409, "Conflict"),
    errors.Conflict: (409, "Conflict"),
    errors.Throttled: (429, "Throttled"),
    # router/auth: which check failed, as AWS names them where it has a name
    errors.MissingSignature: (403, "MissingAuthenticationToken"),
    errors.IncompleteSignature: (403, "IncompleteSignature"),
    errors.UnknownAccessKey: (403, "InvalidAccessKeyId"),
    errors.SignatureMismatch: (403, "SignatureDoesNotMatch"),
    errors.RequestExpired: (403, "RequestExpired"),
    errors.AuthenticationFailed: (403, "AccessDenied"),
    errors.Unavailable: (503, "ServiceUnavailable"),
    errors.RouterError: (500, INTERNAL),  # none other reaches these operations
}


def lookup(error: errors.RouterError) -> tuple[int, str]:
    return lookup_error(ERRORS, error)


def render(error: errors.RouterError, status: int, code: str) -> web.Response:
    """The error answer; the envelope adds ``X-Request-Id``."""
    response = web.Response(
        status=status,
        body=orjson.dumps({"code": code, "message": error.message}),
        content_type="application/json",
    )
    if isinstance(error, WrongMethod):
        response.headers["Allow"] = ", ".join(error.allowed)
    if isinstance(error, errors.Throttled):
        response.headers[RETRY_AFTER_HEADER] = retry_after(error)
    elif isinstance(error, errors.Unavailable):
        response.headers[RETRY_AFTER_HEADER] = UNAVAILABLE_RETRY_S
    return response
