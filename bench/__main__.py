"""``python -m bench [--quick] [--only NAME …]``: every measurement (docs/design.md#performance),
one JSON report.

Measurements: ``throughput`` (normalisation and dedupe, records/s on one core), ``backlog``
(the 30-day backlog: wall time and peak memory of the sync process), ``calls`` (ZIA calls per
run), ``fleet`` (200 instances on 10 tenants, from a warm start and in the steady state: 429s,
activations per rolling hour and p95 threat-to-active latency), ``lifecycle`` (a simulated year:
category size, Redis memory, calls per expiry; the provenance and the audit trail), ``explain``
(why-is-this-blocked look-ups against 100,000 entries). The full run takes about 35-40 minutes;
``--quick`` uses small sizes (about 10). Everything runs on
127.0.0.1: emulators in this process, Redis and the product in their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import backlog, calls, explain, fleet, lifecycle, throughput
from threatshare import logs
from threatshare.collector import pace_collector
from threatshare.embedded import EmbeddedRedis

NAMES = ("throughput", "calls", "backlog", "fleet", "lifecycle", "explain")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run only these measurements")
    parser.add_argument("--records", type=int, help="throughput: records per mix")
    parser.add_argument(
        "--backlog", type=int, nargs="+", metavar="N", help="backlog sizes (records)"
    )
    parser.add_argument(
        "--backlog-url-bytes",
        type=int,
        metavar="N",
        help="backlog: pad every URL to N bytes (e.g. 8192 with --backlog 40000)",
    )
    parser.add_argument("--fleet-instances", type=int, help="fleet: instances (default 200)")
    parser.add_argument("--fleet-tenants", type=int, help="fleet: ZIA tenants (default 10)")
    parser.add_argument("--fleet-accounts", type=int, help="fleet: Mimecast accounts (default 20)")
    parser.add_argument("--fleet-workers", type=int, help="fleet: worker processes (default 4)")
    parser.add_argument(
        "--fleet-minutes", type=float, help="fleet: minutes of new threats (default 5 / 10)"
    )
    parser.add_argument(
        "--fleet-regime",
        choices=("warm", "steady", "both"),
        default="both",
        help="fleet: warm start, steady state (hourly activation budget spent), or both",
    )
    parser.add_argument("--days", type=int, help="lifecycle: simulated days (default 365)")
    return parser


def _plans(
    args: argparse.Namespace, redis_url: str, server_pid: int | None
) -> dict[str, Callable[[], dict[str, Any]]]:
    quick = args.quick
    records = args.records or (20_000 if quick else 200_000)
    sizes = tuple(args.backlog or ((10_000, 50_000) if quick else (100_000, 1_000_000)))
    call_sizes = (0, 1, 1_000, 10_000) if quick else (0, 1, 10_000, 100_000)
    shapes = [fleet_shape(args, steady) for steady in (False, True) if _runs(args, steady)]
    return {
        "throughput": lambda: throughput.measure(redis_url, records, server_pid=server_pid),
        "calls": lambda: calls.measure(redis_url, call_sizes),
        "backlog": lambda: backlog.measure(redis_url, sizes, args.backlog_url_bytes),
        "fleet": lambda: fleet.measure_regimes(redis_url, shapes),
        "lifecycle": lambda: lifecycle.measure(redis_url, days=args.days or (75 if quick else 365)),
        "explain": lambda: explain.measure(redis_url, 10_000 if quick else 100_000),
    }


def _runs(args: argparse.Namespace, steady: bool) -> bool:
    return args.fleet_regime == "both" or (args.fleet_regime == "steady") == steady


def fleet_shape(args: argparse.Namespace, steady: bool) -> fleet.Shape:
    """The fleet of one regime: the full size, ``--quick``'s small one, or as the options say."""
    base = fleet.STEADY_STATE if steady else fleet.WARM_START
    if args.quick:
        base = dataclasses.replace(base, instances=40, tenants=4, accounts=4, inject_for=120.0)
    shape = dataclasses.replace(base)
    if args.fleet_instances:
        shape.instances = args.fleet_instances
    if args.fleet_tenants:
        shape.tenants = args.fleet_tenants
    if args.fleet_accounts:
        shape.accounts = args.fleet_accounts
    if args.fleet_workers:
        shape.workers = args.fleet_workers
    if args.fleet_minutes:
        shape.inject_for = args.fleet_minutes * 60
    return shape


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    pace_collector()  # as every threatshare command does: the bench measures the product
    # The report is the only thing on stdout; the product's own logs go to stderr, warnings up.
    logs.configure("json", level=logging.WARNING)
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    with EmbeddedRedis() as server:
        plans = _plans(args, server.url, server.pid)
        for name in args.only or NAMES:
            started = time.monotonic()
            print(f"bench: {name}…", file=sys.stderr, flush=True)
            try:
                report[name] = plans[name]()
            except Exception as exc:  # one failed measurement must not hide the others
                report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            report[name]["bench_s"] = round(time.monotonic() - started, 1)
    report["targets_met"] = {
        name: report[name].get("meets_target", report[name].get("under_limit"))
        for name in args.only or NAMES
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
