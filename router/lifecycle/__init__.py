"""Execution lifecycle (executor protocol v2): statuses, records, callbacks, polling.

Pure building blocks, no HTTP and no store: :mod:`.status` (the vocabulary),
:mod:`.record` (the execution record and its one transition), :mod:`.callback`
(per-execution callback tokens), :mod:`.backoff` (the polling schedule) and
:mod:`.journal` (batched writes off the request path), :mod:`.poll` (what a
poller does with each answer).
"""
