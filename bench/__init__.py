"""Benchmarks for flow-router: the sampler (``bench.sampler``) and the gateway (``bench.gateway``).

Run both with ``python -m bench``; see ``bench/README.md``.
"""
