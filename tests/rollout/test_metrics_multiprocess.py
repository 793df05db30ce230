"""The rollout gauges with several workers (``PROMETHEUS_MULTIPROC_DIR``): a driver that
stops driving must not leave its last values exported from its files.

Run in a subprocess, because prometheus_client picks its value class (in memory or
in files) when it is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = """
import asyncio, json, sys
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from router.rollout.controller import Rollouts
from router.rollout.metrics import RolloutMetrics
from router.store.memory import MemoryStore
from tests.store.test_contract import an_alias, flow_with_versions

async def main():
    store = MemoryStore()
    flow = await flow_with_versions(store, 3)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    rollouts = Rollouts(store)
    await rollouts.start("orders", "live", {"targetVersion": "2"})
    shown = (await rollouts.observe(flow.id, "live")).rollout
    metrics = RolloutMetrics(CollectorRegistry())
    metrics.show(shown, 3.5)
    seen = {}
    def read(when):
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=sys.argv[1])
        seen[when] = {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for m in registry.collect() for s in m.samples if "rollout" in s.name
        }
    read("driving")
    metrics.clear()
    read("cleared")
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_a_cleared_driver_exports_zeros_not_its_last_values(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    weight = (
        "flow_router_rollout_canary_weight[('alias', 'live'), ('flow', 'orders'), ('version', '2')]"
    )
    phase = (
        "flow_router_rollout_phase[('alias', 'live'), ('flow', 'orders'), ('phase', 'Progressing')]"
    )
    evidence = "flow_router_rollout_evidence[('alias', 'live'), ('flow', 'orders')]"
    assert (seen["driving"][weight], seen["driving"][phase], seen["driving"][evidence]) == (
        5.0, 1.0, 3.5,
    )  # fmt: skip
    cleared = seen["cleared"]
    assert all(value == 0 for name, value in cleared.items() if "rollouts_total" not in name)
    assert (cleared[weight], cleared[phase], cleared[evidence]) == (0, 0, 0)
