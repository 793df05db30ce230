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
import socket
import sys
import tempfile
import time
from types import FrameType

from aiohttp import web

from router import __version__
from router.config import Config
from router.executor import Behaviour
from router.metrics import MULTIPROCESS_ENV
from router.store import is_in_process_url, redact_url

log = logging.getLogger("flow_router.workers")

_RESTART_BACKOFF_S = 1.0
_EXIT_GRACE_S = 5.0  # beyond the drain timeout, for a worker's cleanup before it is killed
_CANNOT_LISTEN = 2  # a worker's exit status when its address is taken: not restarted


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(requested: int, config: Config) -> int:
    """How many workers to run for ``--workers requested`` (0: choose).

    Chosen: one per core on a shared store with an ``--upstream``; otherwise
    one, since both the memory store and the built-in reference executor live
    in one process (logged, so a Redis trial says why it uses one core).
    Raises ``ValueError`` for a count that cannot work.
    """
    in_process = is_in_process_url(config.store)
    if requested < 0:
        raise ValueError("--workers must be 0 (one per core where possible) or more")
    if requested == 0:
        if in_process:
            return 1
        if config.upstream is None:
            log.info(
                "serving with 1 worker: the built-in reference executor lives in one "
                "process; give --upstream (a real executor) to serve on every core"
            )
            return 1
        return available_cores()
    if requested > 1 and in_process:
        raise ValueError(
            "the memory store lives in one process; use --workers 1 "
            "or a shared store (--store redis://…)"
        )
    if requested > 1 and config.upstream is None:
        raise ValueError(
            "the built-in reference executor is per process; give --upstream "
            "when running several workers"
        )
    return requested


class ListenError(Exception):
    """The address cannot be listened on (taken, not ours, not an address)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        if isinstance(error, socket.gaierror):  # a host name that does not resolve
            reason = str(error.strerror)
        else:  # asyncio's own message repeats the address; the errno's text does not
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
        super().__init__(f"cannot listen on {_address(host, port)}: {reason}")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(config: Config, workers: int) -> str:
    """The start-up line: what listens where, on which store (its password hidden)."""
    return (
        f"flow-router {__version__} listening on http://{_address(config.host, config.port)} "
        f"(store {redact_url(config.store)}, {workers} worker{'s' if workers > 1 else ''})"
    )


def check_port(config: Config) -> None:
    """Bind the address as the workers will (SO_REUSEPORT), and let it go: a taken
    port is then one clear error here rather than N workers failing over and over."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((config.host, config.port))
    except OSError as e:
        raise ListenError(config.host, config.port, e) from None


async def _start_site(runner: web.AppRunner, host: str, port: int, *, reuse_port: bool) -> None:
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    except OSError as e:
        raise ListenError(host, port, e) from None


def _event_loop_factory() -> object | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop()


def run_worker(
    config: Config, *, reuse_port: bool, access_log: bool, announce: bool = False
) -> None:
    """Serve in this process until SIGTERM/SIGINT, then drain and return.

    Raises :class:`ListenError` if the address cannot be listened on.
    """
    loop = _event_loop_factory() or asyncio.new_event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            serve(config, reuse_port=reuse_port, access_log=access_log, announce=announce)
        )
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


async def serve(
    config: Config, *, reuse_port: bool, access_log: bool, announce: bool = False
) -> None:
    """Listen until SIGTERM/SIGINT; then stop accepting and drain.

    ``announce``: log :func:`describe`'s line once listening (the one process).

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
        await _start_site(runner, config.host, config.port, reuse_port=reuse_port)
        if announce:
            log.info("%s", describe(config, 1))
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
    try:
        run_worker(config, reuse_port=True, access_log=access_log)
    except ListenError as e:
        log.error("%s", e)
        sys.exit(_CANNOT_LISTEN)


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
    """Run ``workers`` worker processes until SIGTERM/SIGINT; the exit status.

    Raises :class:`ListenError` if the address cannot be listened on.
    """
    check_port(config)
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
    log.info("%s", describe(config, workers))

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
                if process.exitcode == _CANNOT_LISTEN:  # taken since check_port: no retry
                    log.error("a worker cannot listen on the address: stopping")
                    on_signal(signal.SIGTERM, None)
                    exit_code = _CANNOT_LISTEN
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
    if exit_code == _CANNOT_LISTEN:
        return exit_code
    return 0 if stopping else exit_code


def run_executor(host: str, port: int, behaviour: Behaviour | None = None) -> None:
    """``flow-router executor``: the reference executor alone, until SIGTERM/SIGINT.

    Raises :class:`ListenError` if the address cannot be listened on.
    """
    asyncio.run(_serve_executor(host, port, behaviour))


async def _serve_executor(host: str, port: int, behaviour: Behaviour | None) -> None:
    from router.executor import make_executor_app, upstream_for

    runner = web.AppRunner(make_executor_app(behaviour=behaviour), handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        await _start_site(runner, host, port, reuse_port=False)
        log.info(
            "reference executor listening on http://%s; point a gateway at it with --upstream '%s'",
            _address(host, port),
            upstream_for(host, port),
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
