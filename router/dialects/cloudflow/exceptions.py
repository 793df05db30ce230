"""The CloudFlow error table and envelope (docs/wire.md §2.5).

Every domain error maps to one ``(status, Code)``; the answer is
``{Code, Message, RequestId}`` with ``x-acs-request-id``. A throttled request
also carries ``x-acs-retry-after``, on which the SDK raises ThrottlingException.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from router import errors
from router.dialects.common import lookup_error, retry_after

RETRY_AFTER_HEADER = "x-acs-retry-after"

# status, Code -- docs/wire.md §2.5; the most specific class of an error wins.
ERRORS: Mapping[type[errors.RouterError], tuple[int, str]] = {
    errors.MissingParameter: (400, "MissingRequiredParams"),
    errors.UnknownAction: (400, "InvalidAction.NotFound"),
    errors.MethodNotAllowed: (405, "MethodNotAllowed"),
    errors.InvalidArgument: (400, "InvalidArgument"),
    errors.FlowNotFound: (404, "FlowNotExists"),
    errors.VersionNotFound: (404, "FlowVersionNotExists"),
    errors.AliasNotFound: (404, "FlowAliasNotExists"),
    errors.ExecutionNotFound: (404, "ExecutionNotExists"),
    errors.NotFound: (404, "ResourceNotExists"),
    errors.FlowAlreadyExists: (409, "FlowAlreadyExists"),
    errors.AliasAlreadyExists: (409, "FlowAliasAlreadyExists"),
    errors.ExecutionAlreadyExists: (409, "ExecutionAlreadyExists"),
    # StopExecution of a finished execution: the API's own Code and status (400)
    errors.ExecutionFinished: (400, "ExecutionAlreadyCompleted"),
    errors.AlreadyExists: (409, "ResourceAlreadyExists"),
    errors.ResourceInUse: (409, "ResourceInUse"),
    errors.Conflict: (409, "Conflict"),
    errors.QuotaExceeded: (400, "QuotaExceeded"),
    errors.Throttled: (429, "Throttling"),
    # authentication (router/auth): every failure is a 403
    errors.MissingSignature: (403, "MissingSignature"),
    errors.IncompleteSignature: (403, "IncompleteSignature"),
    errors.UnknownAccessKey: (403, "InvalidAccessKeyId.NotFound"),
    errors.SignatureMismatch: (403, "SignatureDoesNotMatch"),
    errors.RequestExpired: (403, "InvalidTimeStamp.Expired"),
    errors.NonceUsed: (403, "SignatureNonceUsed"),
    errors.AuthenticationFailed: (403, "IncompleteSignature"),
    errors.Unavailable: (503, "ServiceUnavailable"),
    errors.ExecutorTimeout: (504, "ExecutorTimeout"),
    # StartSyncExecution still running at --invoke-timeout (it goes on running)
    errors.ExecutionWaitTimeout: (504, "ExecutionWaitTimeout"),
    errors.ExecutorUnreachable: (502, "ExecutorUnavailable"),
    errors.ExecutorError: (502, "ExecutorFailed"),
    errors.RouterError: (500, "InternalError"),
}


def lookup(error: errors.RouterError) -> tuple[int, str]:
    return lookup_error(ERRORS, error)


def render(error: errors.RouterError, status: int, code: str, rid: str) -> web.Response:
    body = {"Code": code, "Message": error.message, "RequestId": rid}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if isinstance(error, errors.Throttled):
        response.headers[RETRY_AFTER_HEADER] = retry_after(error)
    return response


def error_response(error: errors.RouterError, rid: str) -> web.Response:
    status, code = lookup(error)
    return render(error, status, code, rid)
