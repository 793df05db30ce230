"""Serving on every core: N worker processes sharing one port (SO_REUSEPORT).

The supervisor (the process the user started) does not serve. It prepares the
shared metrics directory, starts the workers with the ``spawn`` method (a
fresh interpreter each, so nothing of the parent's event loop is inherited),
restarts a worker that dies, and on SIGTERM/SIGINT passes SIGTERM on and
waits for the workers to drain (:func:`serve`: stop accepting, finish the
requests in progress within ``--drain-timeout``, exit 0), killing any that is
still there a few seconds after that.

Each worker is a complete gateway with its own route cache; on Redis every
worker follows the change feed, so they all route by the same configuration.
The embedded memory store lives inside one process, so it is served by one
worker only.
"""

from __future__ import annotations

import asyncio
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
_EXIT_GRACE_S = 5.0  # beyond the drain timeout, for a worker's cleanup before it is killed


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
    """Serve in this process until SIGTERM/SIGINT, then drain and return."""
    loop = _event_loop_factory() or asyncio.new_event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(config, reuse_port=reuse_port, access_log=access_log))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


async def serve(config: Config, *, reuse_port: bool, access_log: bool) -> None:
    """Listen until SIGTERM/SIGINT; then stop accepting and drain.

    Draining, in order: the listening socket closes (new connections are
    refused); idle keep-alive connections close; requests in progress run to
    completion, for at most ``config.drain_timeout_s``, and their answers go
    out; whatever is still running then is cancelled (its client sees the
    connection close). Only then does the app's cleanup close the executor
    client and the store, so a draining execution still has both.
    """
    from router.app import make_app

    runner = web.AppRunner(
        make_app(config),
        handle_signals=False,  # ours below: drain, then return normally (exit status 0)
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        keepalive_timeout=config.idle_timeout_s,  # also bounds reading a request head
        shutdown_timeout=config.drain_timeout_s,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port)
        await site.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping: no new connections; draining for up to %gs", config.drain_timeout_s)
    finally:
        started = loop.time()
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if stop.is_set():
        log.info("drained in %.2fs", loop.time() - started)


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
    give_up_at = 0.0  # once stopping: workers still running then are killed

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker_main, args=(config, access_log, log_level), name="flow-router-worker"
        )
        process.start()
        return process

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, give_up_at
        if not stopping:
            give_up_at = time.monotonic() + config.drain_timeout_s + _EXIT_GRACE_S
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
            if stopping and time.monotonic() > give_up_at:
                log.error("%d workers still running after the drain timeout: killed", len(running))
                break
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
