"""Who may reach an unauthenticated gateway: the rule ``serve`` checks at start-up.

Without ``--credentials`` every API request is accepted unsigned, so the gateway
refuses to listen where other machines can reach it, unless the operator says
something in front of it authenticates (``--insecure``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name we would have to resolve: assume it is reachable
        return False


def check_exposure(host: str, credentials: Mapping[str, str] | None, insecure: bool) -> None:
    """Refuse to serve unauthenticated on an address other machines can reach."""
    if credentials is None and not insecure and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without --credentials: anyone who can reach it "
            "could change flows and run executions unsigned. Give --credentials PATH "
            "(FLOW_ROUTER_CREDENTIALS), listen on 127.0.0.1, or pass --insecure "
            "(FLOW_ROUTER_INSECURE=1) if something in front of the gateway authenticates"
        )
    if credentials is None and not is_loopback(host):
        logging.getLogger("flow_router").warning(
            "--insecure: serving unsigned requests on %s, reachable from other machines", host
        )
