"""Records per second through normalisation and dedupe, on one core (docs/design.md#performance: >=
100,000/s).

Pages of realistic Mimecast records go through a run's pull exactly as :mod:`threatshare.sync`
does it, without the HTTP, against a real Redis: ``Run.take_page`` (extraction, and each entry's
newest record time and sightings kept in memory), then ``Run.write_times`` (the dedupe against
the category, one script call per 1,000 entries, the new entries staged). The provenance that
the pull's end writes is timed apart and reported beside. The record mixes:

- ``url_logs_distinct``: every record a new URL (the worst case: no decision is cached),
  reported beside the target rather than held to it;
- ``url_logs_realistic``: URLs repeat across clicks and recipients (a pool of a quarter of the
  records), and a fifth of the pool was already pushed by an earlier run;
- ``impersonation_realistic``: look-alike senders, repeating the same way.

Each mix is measured :data:`PASSES` times from the same state, and the median pass reported.
"""

from __future__ import annotations

import contextlib
import gc
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.common import load, one_core_each, write_config
from threatshare.indicators.evidence import impersonation_evidence, url_evidence
from threatshare.indicators.extract import Extractor, Tally
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import impersonation_log, url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger
from threatshare.sync.pipeline import Run

PAGE = 500
TARGET = 100_000
#: Passes over each mix; the median is reported. On a shared machine one pass of the same
#: code varies by a sixth either way (other tenants' load), which the median evens out.
PASSES = 3
_PATHS = ("login", "verify/account", "secure/update.php", "o365/auth", "invoice/view", "")
_IDENTIFIERS = (
    ["similar_internal_domain"],
    ["custom_external_domain", "internal_user_name"],
    ["newly_observed_domain"],
    ["internal_user_name"],  # name-only: skipped
)


def url_records(count: int, pool: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` URL-log records over ``pool`` distinct URLs (with schemes, ports, IDNA, IPs)."""
    rng = random.Random(seed)
    at = datetime.now(UTC) - timedelta(days=1)
    records = []
    for index in range(count):
        n = index if pool >= count else rng.randrange(pool)
        host = f"login-{n}.phish-{n % 997}.example"
        if n % 50 == 0:
            host = f"xn--bcher-kva-{n}.example"
        elif n % 71 == 0:
            host = f"203.0.{n % 250}.{n % 200 + 1}"
        port = ":8443" if n % 13 == 0 else ""
        scheme = "http" if n % 3 else "https"
        url = f"{scheme}://{host}{port}/{_PATHS[n % len(_PATHS)]}?id={n}&utm=mail#top"
        records.append(url_log(url, at + timedelta(seconds=index)))
    return records


def impersonation_records(count: int, pool: int, seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    at = datetime.now(UTC) - timedelta(days=1)
    records = []
    for index in range(count):
        n = index if pool >= count else rng.randrange(pool)
        sender = f"ceo{n}@examp1e-{n}.example"
        records.append(
            impersonation_log(sender, at + timedelta(seconds=index), _IDENTIFIERS[n % 4])
        )
    return records


@contextlib.contextmanager
def _input_frozen() -> Iterator[None]:
    """The bench's own input out of the garbage collector's sight while it is measured. A run
    streams its pages, so its heap holds one page of records; the bench holds all of them, and
    the collector would walk those millions of objects over and over, a cost no run has."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _pages(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(records), PAGE):
        yield records[start : start + PAGE]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds) if seconds > 0 else 0.0


def _extract_only(
    records: list[dict[str, Any]], extract_of: Callable[[Extractor], Callable[..., tuple[str, ...]]]
) -> dict[str, Any]:
    extractor = Extractor(["malicious_urls", "url_domains", "malicious_domains"])
    extract = extract_of(extractor)
    tally = Tally()
    started, cpu = time.perf_counter(), time.process_time()
    entries = sum(len(extract(record, tally)) for record in records)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"records_per_s": _rate(len(records), wall), "cpu_s": round(cpu, 3), "entries": entries}


def _with_dedupe(
    rt: Runtime, name: str, records: list[dict[str, Any]], time_field: str
) -> dict[str, Any]:
    """A run's pull, without the HTTP: normalisation and dedupe (the pages, then the writes of
    the newest record times), then the provenance of what was met, timed apart."""
    run = Run(rt, name, dry_run=False)
    extractor = run.extractor
    if time_field == "date":
        extract, evidence = extractor.url_record, url_evidence
    else:
        extract, evidence = extractor.impersonation_record, impersonation_evidence
    end = datetime.now(UTC).timestamp()
    started, cpu = time.perf_counter(), time.process_time()
    for page in _pages(records):
        run.take_page(page, extract, time_field, end, evidence)
    run.write_times()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    staged = Ledger(rt.redis).staged_count(run.staging)
    provenance_started = time.perf_counter()
    run.write_provenance()
    provenance = time.perf_counter() - provenance_started
    return {
        "records_per_s": _rate(len(records), wall),
        "wall_s": round(wall, 3),
        "cpu_s_this_process": round(cpu, 3),
        "staged": staged,
        "skipped_already_in_category": run.tally.skipped["already_in_category"],
        "provenance_s": round(provenance, 3),
        "with_provenance_records_per_s": _rate(len(records), wall + provenance),
    }


def measure(
    redis_url: str,
    count: int = 200_000,
    passes_per_mix: int = PASSES,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Records per second for each mix, extractor alone and extractor + dedupe: the median of
    ``passes_per_mix`` passes, each from the same state. With ``server_pid`` (a Redis server of
    this machine), the bench runs on one core and Redis on another (``cores`` in the report)."""
    instances = {
        "urls": {
            "zia": "prod",
            "category": "Bench URLs",
            "sources": ["malicious_urls", "url_domains"],
        },
        "senders": {"zia": "prod", "category": "Bench Senders", "sources": ["malicious_domains"]},
    }
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    report: dict[str, Any] = {
        "records": count,
        "page_size": PAGE,
        "passes_per_mix": passes_per_mix,
        "target_per_s": TARGET,
    }
    with (
        Sandbox() as sandbox,
        tempfile.TemporaryDirectory() as tmp,
        one_core_each(server_pid) as cores,
    ):
        report["cores"] = cores
        config = load(write_config(sandbox, Path(tmp) / "bench.toml", instances, redis_url))
        rt = Runtime(config, client)
        mixes: dict[str, tuple[Callable[[], list[dict[str, Any]]], str, str]] = {
            "url_logs_distinct": (lambda: url_records(count, count), "date", "urls"),
            "url_logs_realistic": (lambda: url_records(count, count // 4), "date", "urls"),
            "impersonation_realistic": (
                lambda: impersonation_records(count, count // 4),
                "eventTime",
                "senders",
            ),
        }
        for label, (build, time_field, name) in mixes.items():
            records = build()
            extract_of = (
                (lambda e: e.url_record)
                if time_field == "date"
                else (lambda e: e.impersonation_record)
            )
            passes = []
            for _ in range(passes_per_mix):
                client.flushall()  # each pass starts from the same state
                if label.endswith("realistic"):
                    _preload(rt, name, records[: count // 20], time_field)
                with _input_frozen():
                    passes.append(
                        {
                            "extract_only": _extract_only(records, extract_of),
                            "extract_and_dedupe": _with_dedupe(rt, name, records, time_field),
                        }
                    )
            report[label] = _median_pass(passes)
            del records
        rt.close()
    client.flushall()
    client.close()
    # The target is for Mimecast's logs as they come: a URL is clicked, and a look-alike
    # domain writes, more than once. The all-distinct mix is reported as the worst case.
    rates = [
        mix["extract_and_dedupe"]["records_per_s"]
        for key, mix in report.items()
        if key.endswith("realistic") and isinstance(mix, dict)
    ]
    report["min_records_per_s"] = min(rates)
    report["worst_case_records_per_s"] = report["url_logs_distinct"]["extract_and_dedupe"][
        "records_per_s"
    ]
    report["meets_target"] = min(rates) >= TARGET
    return report


def _median_pass(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The pass of median dedupe rate, whole (its figures belong together), with every pass's
    rate beside it: the spread a shared machine gives the same code."""
    rates = sorted(p["extract_and_dedupe"]["records_per_s"] for p in passes)
    median = rates[(len(rates) - 1) // 2]
    chosen = next(p for p in passes if p["extract_and_dedupe"]["records_per_s"] == median)
    return {**chosen, "passes_records_per_s": rates}


def _preload(rt: Runtime, name: str, records: list[dict[str, Any]], time_field: str) -> None:
    """Mark the entries of ``records`` as pushed by an earlier run (a share of them repeats)."""
    extractor = Extractor(rt.config.instances[name].sources)
    extract = extractor.url_record if time_field == "date" else extractor.impersonation_record
    tally = Tally()
    when = datetime.now(UTC).timestamp()
    sightings = {entry: when for record in records for entry in extract(record, tally)}
    Ledger(rt.redis).record_pushed(name, sightings)
