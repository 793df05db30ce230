"""Gateway configuration: one frozen value built by the CLI (or by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    settings: Settings = field(default_factory=Settings)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    idempotency_ttl_s: int = 8 * 3600  # how long a Bedrock clientToken is remembered
    random_seed: int | None = None  # seed of the version choice (tests); None: from the OS

    def upstream_template(self) -> str:
        if self.upstream is not None:
            return self.upstream
        from router.executor import TEMPLATE_PATH

        return f"http://127.0.0.1:{self.port}{TEMPLATE_PATH}"
