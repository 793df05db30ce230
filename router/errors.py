"""Domain errors raised by the core.

The core never speaks HTTP: it raises one of these, and each dialect maps the
class to its own error envelope in a single table. Every error carries a
human-readable ``message`` that is safe to show to the caller, and enough
structured data (``field``, ``kind``, ``name``) for a dialect to pick a code.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- caller mistakes ---------------------------------------------------------


class InvalidArgument(RouterError):
    """A parameter is present but its value is not acceptable."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MissingParameter(InvalidArgument):
    """A required parameter is absent (or empty, which the SDKs send for unset)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"required parameter {field} is missing", field)


class InvalidToken(InvalidArgument):
    """A pagination token the store did not issue; the service names the field."""

    def __init__(self) -> None:
        super().__init__("the pagination token is not valid")


class MethodNotAllowed(InvalidArgument):
    """The HTTP method is not one the API uses on that path."""


class UnknownAction(InvalidArgument):
    """The request names an operation this gateway does not serve."""


class BodyTooLarge(InvalidArgument):
    """The request body is larger than ``--max-body-bytes`` (router/limits)."""


class BodyTimeout(InvalidArgument):
    """The request body did not arrive within ``--body-timeout`` (router/limits)."""


# -- resource state ----------------------------------------------------------


class NotFound(RouterError):
    kind = "resource"

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{self.kind} {name} does not exist")
        self.name = name


class FlowNotFound(NotFound):
    kind = "flow"


class VersionNotFound(NotFound):
    kind = "flow version"


class AliasNotFound(NotFound):
    kind = "flow alias"


class ExecutionNotFound(NotFound):
    kind = "execution"


class AlreadyExists(RouterError):
    kind = "resource"

    def __init__(self, name: str) -> None:
        super().__init__(f"{self.kind} {name} already exists")
        self.name = name


class FlowAlreadyExists(AlreadyExists):
    kind = "flow"


class AliasAlreadyExists(AlreadyExists):
    kind = "flow alias"


class ExecutionAlreadyExists(AlreadyExists):
    kind = "execution"


class Conflict(RouterError):
    """The request is well-formed but clashes with the current state."""


class ExecutionFinished(Conflict):
    """Stopping an execution that has already reached its final status."""

    def __init__(self, execution: str, message: str | None = None) -> None:
        super().__init__(message or f"execution {execution} has already finished")
        self.execution = execution


class ResourceInUse(Conflict):
    """Deleting something another resource still depends on."""


class IdempotencyMismatch(Conflict):
    """A client token was reused with different parameters."""


class QuotaExceeded(RouterError):
    """A configured limit on the number of resources has been reached."""


class Throttled(RouterError):
    """The caller is over its request rate; it may retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# -- authentication (router/auth) ---------------------------------------------


class AuthenticationFailed(RouterError):
    """The request is not signed by a known key: each subclass names the check that
    failed, so CloudFlow can answer its own Code; Bedrock answers them all alike."""


class MissingSignature(AuthenticationFailed):
    """Credentials are configured and the request carries no signature at all."""


class IncompleteSignature(AuthenticationFailed):
    """A signature is present but malformed, or lacks a part it must carry."""


class UnknownAccessKey(AuthenticationFailed):
    def __init__(self, access_key_id: str) -> None:
        super().__init__(f"access key {access_key_id!r} is not known")
        self.access_key_id = access_key_id


class SignatureMismatch(AuthenticationFailed):
    """The signature is not the one the key's secret gives for this request."""


class RequestExpired(AuthenticationFailed):
    """The signed timestamp is outside the accepted window around the server's clock."""


class NonceUsed(AuthenticationFailed):
    """The signature nonce was already used: a replayed request."""


# -- dependencies ------------------------------------------------------------


class Unavailable(RouterError):
    """The store cannot be reached; the request may be retried."""


class ExecutionWaitTimeout(RouterError):
    """A synchronous execution (InvokeFlow, StartSyncExecution) did not reach its final
    status within ``--invoke-timeout``; it keeps running and can still be described."""

    def __init__(self, execution: str, timeout_s: float, version: str) -> None:
        super().__init__(
            f"execution {execution} on version {version} did not finish within "
            f"{timeout_s:g}s; it is still running"
        )
        self.execution = execution
        self.timeout_s = timeout_s
        self.version = version


class ExecutorError(RouterError):
    """The version's executor failed; carries the version that was chosen."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


class ExecutorTimeout(ExecutorError):
    pass


class ExecutorUnreachable(ExecutorError):
    pass


class ExecutorOverloaded(ExecutorTimeout):
    """The version had ``--max-inflight-per-version`` executions in flight until the
    deadline: nothing was sent to its executor (router/breaker)."""


class CircuitOpen(ExecutorUnreachable):
    """The version's circuit is open after consecutive failures: nothing was sent to
    its executor (router/breaker)."""
