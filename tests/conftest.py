"""The shared fixtures live in tests/plugin.py, registered here once for every suite."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.plugin"]

# Older spellings, for modules that import these from here: new code imports them
# from tests.plugin and tests.redis_servers.
pytest.register_assert_rewrite("tests.plugin")
from tests.plugin import STORE_KINDS, StoreBackend, make_backend  # noqa: E402, F401
from tests.redis_servers import (  # noqa: E402, F401
    REQUIRE_REDIS_ENV,
    SENTINEL_SERVICE,
    RedisClusterNodes,
    RedisSentinel,
    RedisServer,
    SentinelProcess,
    redis_binary,
    start_on_free_port,
)
