"""The ``threatshare`` command (S7).

``threatshare [--config PATH] COMMAND``: run, worker, scheduler, status, resume, unblock, check,
serve, demo. Configuration is loaded once here and passed down; an invalid one prints one line
per problem and exits 2. The fleet runtime (``workers``) is imported only by the commands that
need it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from threatshare import config as config_module
from threatshare import logs
from threatshare.config import Config
from threatshare.connection import redis_for
from threatshare.errors import ConfigError, StoreUnavailable, redis_errors

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: ``status`` could not reach Redis (S7).
EXIT_UNREACHABLE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threatshare",
        description="Share Mimecast threats with a Zscaler ZIA custom URL category.",
    )
    parser.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="sync instances (once, or scheduler + worker until stopped)")
    run.add_argument("--once", action="store_true", help="sync each instance once, then exit")
    run.add_argument(
        "--instance", action="append", default=[], metavar="NAME", help="only this instance"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="pull and normalise; change nothing in ZIA or state"
    )

    worker = sub.add_parser("worker", help="an RQ worker of the fleet")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    sub.add_parser("scheduler", help="the fleet's scheduler: one job per instance per interval")

    status = sub.add_parser("status", help="state of every instance")
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    resume = sub.add_parser("resume", help="clear 'halted' so the next run tries again")
    resume.add_argument("name", metavar="NAME")

    unblock = sub.add_parser(
        "unblock",
        help="remove a false positive from a category now, and never push it again",
        description="unblock NAME ENTRY... [--reason TEXT] | NAME --list | NAME --undo ENTRY; "
        "with --all, every instance (and no NAME)",
    )
    unblock.add_argument("args", nargs="*", metavar="NAME ENTRY", help="instance, then entries")
    unblock.add_argument("--reason", default="", metavar="TEXT", help="why (kept and logged)")
    unblock.add_argument("--list", action="store_true", help="show the runtime allow list")
    unblock.add_argument("--undo", metavar="ENTRY", help="take ENTRY off the runtime allow list")
    unblock.add_argument("--all", action="store_true", help="every instance")

    check = sub.add_parser("check", help="validate the configuration")
    check.add_argument(
        "--live", action="store_true", help="also get tokens and make one read call each"
    )

    serve = sub.add_parser("serve", help="the read-only operations endpoint (metrics, page)")
    serve.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help="address to bind (default: settings.listen, else 127.0.0.1:9410)",
    )

    demo = sub.add_parser("demo", help="the whole product on sandbox emulators, on this machine")
    demo.add_argument("--state-dir", metavar="DIR", help="where the demo keeps its files")
    return parser


def _listen(value: str) -> str:
    from threatshare.ops.listen import parse_listen

    try:
        parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def load_config(path: str | None) -> Config:
    """The configuration, or SystemExit(2) after printing every problem."""
    resolved = config_module.resolve_path(path)
    try:
        return config_module.load(resolved)
    except ConfigError as exc:
        print(f"{resolved}: invalid configuration ({len(exc.problems)} problems)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    path = config_module.resolve_path(args.config)
    for warning in config_module.warnings_for(path, config):
        print(f"warning: {warning}")
    print(
        f"{path}: valid ({len(config.instances)} instances, {len(config.mimecast)} Mimecast "
        f"accounts, {len(config.zia)} ZIA tenants)"
    )
    from threatshare.indicators.rules import summary_lines

    for line in summary_lines(config):
        print(f"rules: {line}")
    for name, inst in sorted(config.instances.items()):
        if inst.allow:
            print(f"rules: instances.{name}.allow: {len(inst.allow)} entries")
    if not args.live:
        return EXIT_OK
    from threatshare.ops.live_check import check_live

    with redis_for(config) as client:
        results = check_live(config, client)
    for line in results.lines:
        print(line)
    return EXIT_OK if results.ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from threatshare.ops import status
    from threatshare.state.store import Store

    if args.name and args.name not in config.instances:
        print(f"no instance {args.name!r} in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with redis_errors("status"), redis_for(config) as client:
            records = status.collect(config, Store(client), args.name)
    except StoreUnavailable as exc:
        cause = type(exc.__cause__).__name__
        print(f"status: cannot reach Redis at {_redis_place(config)} ({cause})")
        return EXIT_UNREACHABLE
    print(status.render_json(records) if args.json else status.render_table(records))
    return status.exit_code(records)


def _redis_place(config: Config) -> str:
    """Where Redis was looked for, without the URL's password."""
    if config.settings.redis_url is None:
        return f"the embedded Redis of {config.settings.resolved_state_dir}"
    parsed = urlsplit(config.settings.redis_url.get_secret_value())
    return f"{parsed.hostname or parsed.path}:{parsed.port or 6379}"


def cmd_resume(args: argparse.Namespace, config: Config) -> int:
    from threatshare.state.store import Store

    if args.name not in config.instances:
        print(f"no instance {args.name!r} in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    with redis_for(config) as client:
        resumed = Store(client).resume(args.name)
    if resumed:
        print(f"{args.name}: resumed; the next run tries again")
    else:
        print(f"{args.name}: was not halted; nothing to do")
    return EXIT_OK


def cmd_unblock(args: argparse.Namespace, config: Config) -> int:
    from threatshare.ops.unblock import unblock_command

    with redis_for(config) as client:
        return unblock_command(args, config, client)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    unknown = [n for n in args.instance if n not in config.instances]
    if unknown:
        print(f"no such instance: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    if not args.once and not args.dry_run:
        from workers.single import run_forever

        if args.instance:  # only the named instances, for as long as it runs
            chosen = {n: config.instances[n] for n in args.instance}
            config = config.model_copy(update={"instances": chosen})
        return run_forever(config)
    from threatshare.ops.run_once import run_once

    with redis_for(config) as client:
        return run_once(config, client, args.instance or None, dry_run=args.dry_run)


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    from workers.worker import run_worker

    return run_worker(config, burst=args.burst)


def cmd_scheduler(args: argparse.Namespace, config: Config) -> int:
    from workers.scheduler import run_scheduler

    return run_scheduler(config)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from threatshare.ops.serve import serve
    from workers.worker import workers_seen

    return serve(config, args.listen, workers_seen)


def cmd_demo(args: argparse.Namespace, config: Config | None) -> int:
    from threatshare.sandbox.demo import run_demo

    return run_demo(Path(args.state_dir) if args.state_dir else None)


COMMANDS: dict[str, Callable[[argparse.Namespace, Any], int]] = {
    "run": cmd_run,
    "worker": cmd_worker,
    "scheduler": cmd_scheduler,
    "status": cmd_status,
    "resume": cmd_resume,
    "unblock": cmd_unblock,
    "check": cmd_check,
    "serve": cmd_serve,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # The demo writes its own configuration; every other command reads one.
        config = None if args.command == "demo" else load_config(args.config)
        logs.configure(config.settings.log_format if config else "auto")
        return COMMANDS[args.command](args, config)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
