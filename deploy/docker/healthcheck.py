#!/usr/bin/env python3
"""Container health check: GET a flow-router health endpoint, exit 0 on 200.

Usage: flow-router-healthcheck [PATH]   (PATH: /healthz by default, or /readyz)

python:*-slim has no curl, and the standard library is enough. The port is
FLOW_ROUTER_PORT, as for `flow-router serve`; configure the container through the
environment, not with `--port`, so the two agree.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# Addresses that mean "every interface": the check then goes through loopback.
_WILDCARD = {"", "0.0.0.0", "::", "[::]"}


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    host = os.environ.get("FLOW_ROUTER_HOST", "")
    host = "127.0.0.1" if host in _WILDCARD else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = os.environ.get("FLOW_ROUTER_PORT", "8080")
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
