"""Gateway configuration: one frozen value built by the CLI (or by tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from router import limits
from router.auth import guard
from router.breaker import VersionLimits
from router.forward import Timeouts
from router.service import Settings


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "memory://"
    key_prefix: str = "fr"
    # None: forward to the built-in reference executor mounted in this app.
    upstream: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_idle_per_host: int = 256  # idle keep-alive connections kept per executor host
    # in-flight limit and circuit breaker per (flow, version) (router/breaker)
    version_limits: VersionLimits = field(default_factory=VersionLimits)
    # what a client may send and how slowly (router/limits), and how long SIGTERM drains
    max_body_bytes: int = limits.DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = limits.DEFAULT_BODY_TIMEOUT_S
    idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S
    drain_timeout_s: float = 30.0
    # a client that reads nothing of a large answer for this long is disconnected
    send_timeout_s: float = 30.0  # router/respond.DEFAULT_SEND_TIMEOUT_S
    settings: Settings = field(default_factory=Settings)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    idempotency_ttl_s: int = 8 * 3600  # how long a Bedrock clientToken is remembered
    rate_limit: float | None = None  # requests/s per access key (needs credentials)
    rate_burst: int = 0  # bucket size; 0: one second's worth of rate_limit
    # a signed request's store calls (nonce, rate limit): how long they may take, and
    # whether the request is let in or refused when the store fails (router/auth/guard)
    auth_store_timeout_s: float = guard.DEFAULT_TIMEOUT_S
    auth_store_failure: guard.Failure = guard.DEFAULT_FAILURE
    random_seed: int | None = None  # seed of the version choice (tests); None: from the OS
    # access key id -> secret (router/auth); None: requests are not authenticated.
    credentials: Mapping[str, str] | None = field(default=None, repr=False)
    insecure: bool = False  # serve unauthenticated on a non-loopback address anyway
    # base URL executors reach the replicas at for callbacks (None: polling only), and
    # the secret of their tokens (None: one kept in the store, shared by all replicas)
    callback_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)

    def upstream_template(self) -> str:
        if self.upstream is not None:
            return self.upstream
        from router.executor import TEMPLATE_PATH

        return f"http://127.0.0.1:{self.port}{TEMPLATE_PATH}"
