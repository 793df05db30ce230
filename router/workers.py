"""Serving on every core: N worker processes sharing one port (SO_REUSEPORT).

The supervisor (the process the user started) does not serve. It prepares the
shared metrics directory, starts the workers with the ``spawn`` method (a
fresh interpreter each, so nothing of the parent's event loop is inherited),
restarts a worker that dies, and on SIGTERM/SIGINT passes the signal on and
waits for the workers to drain (aiohttp's graceful shutdown).

Each worker is a complete gateway with its own route cache; on Redis every
worker follows the change feed, so they all route by the same configuration.
The embedded memory store lives inside one process, so it is served by one
worker only.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from types import FrameType

from aiohttp import web

from router.config import Config
from router.metrics import MULTIPROCESS_ENV

log = logging.getLogger("flow_router.workers")

_RESTART_BACKOFF_S = 1.0
_DRAIN_GRACE_S = 30.0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(store_url: str) -> int:
    """All cores on a shared store; one process on the embedded store."""
    return 1 if store_url.startswith("memory") or store_url == "" else available_cores()


def _event_loop_factory() -> object | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop()


def run_worker(config: Config, *, reuse_port: bool, access_log: bool) -> None:
    """Serve in this process until SIGTERM/SIGINT."""
    from router.app import make_app

    loop = _event_loop_factory()
    web.run_app(
        make_app(config),
        host=config.host,
        port=config.port,
        reuse_port=reuse_port,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        print=None,
        loop=loop,  # type: ignore[arg-type]
        shutdown_timeout=_DRAIN_GRACE_S,
    )


def _worker_main(config: Config, access_log: bool, log_level: str) -> None:
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
    )
    run_worker(config, reuse_port=True, access_log=access_log)


def _prepare_metrics_dir() -> str:
    """A clean directory for the workers' metric files (old files would be summed in)."""
    path = os.environ.get(MULTIPROCESS_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="flow-router-metrics-")
        os.environ[MULTIPROCESS_ENV] = path
    return path


def supervise(config: Config, workers: int, *, access_log: bool, log_level: str) -> int:
    metrics_dir = _prepare_metrics_dir()
    owned_dir = metrics_dir.startswith(tempfile.gettempdir())
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker_main, args=(config, access_log, log_level), name="flow-router-worker"
        )
        process.start()
        return process

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in running.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    running: dict[int, multiprocessing.process.BaseProcess] = {}
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for _ in range(workers):
        process = start()
        running[process.sentinel] = process
    log.info("started %d workers on %s:%d", workers, config.host, config.port)

    from prometheus_client import multiprocess

    exit_code = 0
    try:
        while running:
            ready = multiprocessing.connection.wait(list(running), timeout=1.0)
            for sentinel in ready:
                assert isinstance(sentinel, int)
                process = running.pop(sentinel)
                process.join()
                if process.pid is not None:
                    multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                if stopping:
                    continue
                log.error("worker %s exited with %s; restarting", process.pid, process.exitcode)
                exit_code = 1
                time.sleep(_RESTART_BACKOFF_S)
                replacement = start()
                running[replacement.sentinel] = replacement
    finally:
        for process in running.values():
            process.kill()
        if owned_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if stopping else exit_code
