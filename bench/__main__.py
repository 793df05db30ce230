"""``python -m bench``: the sampler bench, then the gateway bench, into a new results dir."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import gateway, sampler
from bench._util import out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run bench.sampler, then bench.gateway (see bench/README.md).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 3 s per wrk run, short sampler"
    )
    parser.add_argument("--rounds", type=int, help="gateway: interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, help="gateway: seconds per wrk run (default 10)")
    parser.add_argument("--only", choices=("sampler", "gateway"), help="run one bench only")
    parser.add_argument(
        "--gateway-workers", type=int, help="gateway: --workers for flow-router (default 1)"
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="gateway: extra argument for flow-router serve (repeatable)",
    )
    parser.add_argument("--no-install", action="store_true", help="gateway: never call apt-get")
    parser.add_argument("--keep-tmp", action="store_true", help="gateway: keep configs and logs")
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default: a new bench/out/<UTC time>/; "
        "--out bench/results replaces the committed results)",
    )
    args = parser.parse_args(argv)

    out = out_dir(args.out)
    print(f"results go to {out}", flush=True)
    common = ["--out", str(out)] + (["--quick"] if args.quick else [])
    gateway_argv = list(common)
    if args.rounds:
        gateway_argv += ["--rounds", str(args.rounds)]
    if args.duration:
        gateway_argv += ["--duration", str(args.duration)]
    if args.gateway_workers:
        gateway_argv += ["--gateway-workers", str(args.gateway_workers)]
    for extra in args.gateway_arg:
        gateway_argv.append(f"--gateway-arg={extra}")
    if args.no_install:
        gateway_argv.append("--no-install")
    if args.keep_tmp:
        gateway_argv.append("--keep-tmp")

    if args.only != "gateway":
        status = sampler.main(common)
        if status:
            return status
        sys.stdout.write("\n")
        sys.stdout.flush()
    status = gateway.main(gateway_argv) if args.only != "sampler" else 0
    print(f"results are in {out}", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
