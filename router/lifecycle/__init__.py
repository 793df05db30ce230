"""Execution lifecycle (executor protocol v2): statuses, records, callbacks, polling.

Pure building blocks, no HTTP and no store: :mod:`.status` (the vocabulary),
:mod:`.record` (the execution record and its one transition), :mod:`.callback`
(per-execution callback tokens), :mod:`.backoff` (the polling schedule) and
:mod:`.journal` (batched writes off the request path), :mod:`.poll` (what a
poller does with each answer), :mod:`.executions` (what the dialects see of an
execution: listing filters, history).

The driver around them, over the store and the executor client:
:mod:`.driver` (starts, transitions, waits; what ``Gateway`` delegates to) and
:mod:`.poller` (the background task sharing the polls across replicas).
"""
