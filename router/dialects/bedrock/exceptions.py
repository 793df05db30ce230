"""The Bedrock error table and envelope (docs/wire.md §3.4).

Every domain error maps to one modeled Bedrock exception. The envelope is the
``x-amzn-ErrorType`` header plus ``{"message"}`` (and ``fieldList`` for a
validation error that names a field), with ``x-amzn-RequestId``.

Executor failures are ``DependencyFailedException`` (424): a 4xx, so boto3's
default retry never sends an execution to the executor a second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from router import errors
from router.dialects.common import lookup_error, retry_after

VALIDATION = "ValidationException"
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ConflictException"
QUOTA = "ServiceQuotaExceededException"
INTERNAL = "InternalServerException"
DEPENDENCY = "DependencyFailedException"
UNKNOWN_OPERATION = "UnknownOperationException"
ACCESS_DENIED = "AccessDeniedException"
THROTTLING = "ThrottlingException"
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
RETRY_AFTER_HEADER = "Retry-After"

# status, code; the most specific class of an error wins.
ERRORS: Mapping[type[errors.RouterError], tuple[int, str]] = {
    errors.UnknownAction: (404, UNKNOWN_OPERATION),
    errors.InvalidArgument: (400, VALIDATION),  # MissingParameter included
    errors.NotFound: (404, NOT_FOUND),
    errors.AlreadyExists: (409, CONFLICT),
    errors.Conflict: (409, CONFLICT),  # ResourceInUse, IdempotencyMismatch
    errors.QuotaExceeded: (402, QUOTA),
    errors.Throttled: (429, THROTTLING),
    errors.AuthenticationFailed: (403, ACCESS_DENIED),  # router/auth: any signature failure
    # Store unreachable: nothing was sent to an executor yet, so a retry is safe.
    errors.Unavailable: (500, INTERNAL),
    errors.ExecutorError: (424, DEPENDENCY),
    # InvokeFlow's wait for an asynchronous execution ended (--invoke-timeout): in the
    # stream, like the executor failing; the execution itself keeps running.
    errors.ExecutionWaitTimeout: (424, DEPENDENCY),
    errors.RouterError: (500, INTERNAL),
}
# bedrock-agent-runtime models the quota error as 400 (bedrock-agent: 402).
RUNTIME_STATUS: Mapping[str, int] = {QUOTA: 400}


def lookup(error: errors.RouterError, runtime: bool = False) -> tuple[int, str]:
    status, code = lookup_error(ERRORS, error)
    if runtime:
        status = RUNTIME_STATUS.get(code, status)
    return status, code


def error_body(error: errors.RouterError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": error.message}
    field = getattr(error, "field", None)
    if isinstance(error, errors.InvalidArgument) and field:
        body["fieldList"] = [{"name": field, "message": error.message}]
    return body


def render(error: errors.RouterError, status: int, code: str) -> web.Response:
    """The error answer; the envelope adds ``x-amzn-RequestId``."""
    response = web.Response(
        status=status, body=orjson.dumps(error_body(error)), content_type="application/json"
    )
    response.headers[ERROR_TYPE_HEADER] = code
    if isinstance(error, errors.Throttled):
        response.headers[RETRY_AFTER_HEADER] = retry_after(error)
    return response


def stream_exception_type(error: errors.RouterError) -> str:
    """The ``:exception-type`` of an in-stream error: the code in lower camel case."""
    code = lookup(error, runtime=True)[1]
    if code == UNKNOWN_OPERATION:
        code = VALIDATION
    return code[0].lower() + code[1:]
