"""A gateway whose Redis is gone tells clients "store unavailable", and only the log more.

``/readyz`` is unauthenticated, and API errors reach any client: neither may
carry redis-py's messages (hosts, ports, pool settings, object addresses).
The details go to the gateway's log at WARNING, once per interval rather than
once per request, and without a traceback.
"""

from __future__ import annotations

import json
import re

from tests.processes import Connection, Processes, setup_flow
from tests.redis_servers import RedisServer

REQUESTS = 8
# What redis-py's messages are made of: never in an answer.
INTERNALS = re.compile(r"127\.0\.0\.1|0x[0-9a-f]{6,}|Error \d+|Connection|redis", re.IGNORECASE)


def test_clients_see_store_unavailable_and_the_log_has_the_details(
    own_redis: RedisServer, processes: Processes
) -> None:
    gateway = processes.start("--store", own_redis.url, "--workers", "1")
    conn = Connection(gateway.port, fresh=True)
    setup_flow(conn, "orders", 1)
    assert conn.get("/readyz")[0] == 200
    own_redis.stop()

    answers: list[tuple[int, bytes]] = []
    for i in range(REQUESTS // 4):
        answers.append(conn.get("/readyz"))
        cloudflow = conn.cloudflow("DescribeFlow", {"Name": "orders"})
        answers.append((cloudflow.status, json.dumps(cloudflow.body).encode()))
        created = conn.cloudflow("CreateFlow", {"Name": f"f{i}", "Definition": "x", "Type": "FDL"})
        answers.append((created.status, json.dumps(created.body).encode()))
        status, body, _ = conn.request("GET", "/flows/")
        answers.append((status, body))

    assert answers[0] == (503, b'{"status": "unavailable", "reason": "store unavailable"}')
    for status, body in answers:
        assert status in (500, 503), (status, body)
        assert b"store unavailable" in body, body
        assert not INTERNALS.search(body.decode()), body

    log = gateway.log()
    details = [line for line in log.splitlines() if "store unavailable:" in line]
    assert details, log[-3000:]
    assert all(" WARNING " in line for line in details), details
    assert f":{own_redis.port}" in details[0], details[0]  # the operator sees where
    assert len(details) < REQUESTS, details  # not one line per request
    assert "Traceback" not in log
