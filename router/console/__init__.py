"""The operator console: ``GET /console`` (the page, router/console/page) and its
JSON under ``/v1/console`` (router/console/api), shaped by router/console/data
from the store's shared statistics (router/store/stats)."""

from __future__ import annotations

from aiohttp import web

from router.console import api, page
from router.metrics import Metrics
from router.service import Gateway

__all__ = ["add_routes"]


def add_routes(
    app: web.Application, gateway_key: web.AppKey[Gateway], metrics: Metrics, *, signed: bool
) -> None:
    """The page and its API; call before the rest of ``/v1`` is routed."""
    page.add_routes(app, signed)
    api.add_routes(app, gateway_key, metrics)
