"""The SDK suites' fixtures (background loop, recording executor) for the auth tests."""

from tests.dialects.conftest import (  # noqa: F401 - fixtures, used by name
    bg_loop,
    executor,
    recording_executor_session,
)
