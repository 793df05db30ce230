"""Use cases of the rollout API (``/v1/flows/{flow}/aliases/{alias}/rollout``).

The HTTP layer (router/rollout/api.py) parses and renders; this module checks the
request against the store and makes the one atomic write each action needs. Every
answer is the status JSON of the issue (``flow``, ``alias``, ``targetVersion``,
``baseline``, ``phase``, ``step``, ``canaryWeight``, ``counts``, ``evidence``,
``message``, ``startedAt``, ``updatedAt``, ``history``).

Errors: ``FlowNotFound``/``AliasNotFound``/``VersionNotFound`` (404),
``RolloutNotFound`` (404, the alias never had a rollout), ``InvalidArgument`` (400,
``field`` in camelCase), ``RolloutActive`` (409, start while one is active),
``RolloutFinished`` (409, an action on a finished rollout), ``Unavailable`` (503).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


class Rollouts:
    """Use cases of the rollout API; the app holds one under ``ROLLOUTS`` (router.app)."""

    async def start(self, flow_name: str, alias: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start a rollout of ``alias`` to ``body["targetVersion"]``: 201 with the status."""
        raise NotImplementedError

    async def status(self, flow_name: str, alias: str) -> dict[str, Any]:
        """The status of the alias's current or last rollout; ``RolloutNotFound`` if none."""
        raise NotImplementedError

    async def promote(self, flow_name: str, alias: str, full: bool) -> dict[str, Any]:
        """Skip the analysis of the current step (``full``: go straight to 100%)."""
        raise NotImplementedError

    async def pause(self, flow_name: str, alias: str) -> dict[str, Any]:
        raise NotImplementedError

    async def resume(self, flow_name: str, alias: str) -> dict[str, Any]:
        raise NotImplementedError

    async def abort(self, flow_name: str, alias: str) -> dict[str, Any]:
        """Restore the routes from before the rollout in one write: phase Aborted."""
        raise NotImplementedError


# The app's one Rollouts (set by router.app while the store is open); the API's
# handlers read it per request: ``request.app[ROLLOUTS]``.
ROLLOUTS = web.AppKey("rollouts", Rollouts)
