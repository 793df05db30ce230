"""``GET /console``: the operator console, one page of static files served by the gateway.

No build step and nothing from outside the gateway: ``static/`` holds the HTML,
the CSS and the JavaScript as they are served (vanilla JS, no library). Every
answer carries a strict Content-Security-Policy: scripts and styles from this
origin only (no inline script), data fetched from this origin only, nothing
framed, no form posts. The page itself shows nothing of the store: it asks
``/v1/console`` (router/console/api) for that, signing each request with SigV4
in the browser when the gateway has ``--credentials`` (the page learns that
from a ``<meta>`` the server sets, so no failed request has to tell it).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
AUTH_MARK = b"__AUTH__"  # in index.html: "sigv4" with --credentials, else "none"


def _response(body: bytes, suffix: str) -> web.Response:
    return web.Response(body=body, headers={**HEADERS, "Content-Type": TYPES[suffix]})


def add_routes(app: web.Application, signed: bool) -> None:
    """Serve ``/console`` and its files; ``signed``: the API needs SigV4 signatures."""
    index = (STATIC / "index.html").read_bytes().replace(AUTH_MARK, b"sigv4" if signed else b"none")
    assets = {
        p.name: (p.read_bytes(), p.suffix)
        for p in sorted(STATIC.iterdir())
        if p.suffix in (".js", ".css", ".svg")
    }

    async def page(request: web.Request) -> web.Response:
        return _response(index, ".html")

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such console file", headers=HEADERS)
        return _response(*found)

    app.router.add_get("/console", page)
    app.router.add_get("/console/", page)
    app.router.add_get("/console/static/{name}", asset)
