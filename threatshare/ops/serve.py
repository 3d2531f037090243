"""``threatshare serve`` and the endpoint inside ``threatshare run``
(docs/design.md#operations-endpoint): which Redis the endpoint reads, with what timeouts, and how
it starts and stops.

``serve`` only attaches to Redis: in single-machine mode it reads the embedded Redis that a
running ``threatshare run`` owns (found by its socket in ``state_dir``) and never starts one
(that would take the ownership ``run`` needs). When none runs it says so in one line and exits,
rather than serve a page that can only say "Redis is down". Its short timeouts keep a scrape
within Prometheus' own timeout when Redis hangs.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import redis

from threatshare.config import Config
from threatshare.config.listen import DEFAULT_LISTEN, parse_listen
from threatshare.embedded import running_url, socket_url
from threatshare.ops.server import Endpoint, OperationsApp
from threatshare.ops.snapshot import WorkerCount

REDIS_TIMEOUT = 5.0
#: The command line's "cannot reach Redis" exit code.
EXIT_NOT_RUNNING = 3


def endpoint_url(config: Config) -> str:
    if config.settings.redis_url is not None:
        return config.settings.redis_url.get_secret_value()
    return socket_url(config.settings.resolved_state_dir)


def endpoint_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


def open_endpoint(
    config: Config, client: redis.Redis, listen: str, workers: WorkerCount | None
) -> Endpoint:
    """The endpoint bound to ``listen``; OSError when the address cannot be bound."""
    host, port = parse_listen(listen)
    return Endpoint(OperationsApp(config, client, workers=workers), host, port)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # waitress closes its sockets and threads on SystemExit


def serve(config: Config, listen: str | None, workers: WorkerCount | None) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop, 1 when the address is taken, 3 in
    single-machine mode when no ``threatshare run`` is running."""
    listen = listen or config.settings.listen or DEFAULT_LISTEN
    state_dir = config.settings.resolved_state_dir
    if config.settings.redis_url is None and running_url(state_dir) is None:
        print(
            f"threatshare serve: no `threatshare run` is running on {state_dir} (single-machine "
            "mode reads its Redis); start it, or set settings.listen for `run` to serve the page",
            file=sys.stderr,
        )
        return EXIT_NOT_RUNNING
    client = endpoint_client(endpoint_url(config))
    try:
        try:
            endpoint = open_endpoint(config, client, listen, workers)
        except OSError as exc:
            print(f"cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        signal.signal(signal.SIGTERM, _stop)
        print(f"threatshare serve: http://{listen}/ (metrics at /metrics)", flush=True)
        endpoint.serve()
        return 0
    finally:
        client.close()
