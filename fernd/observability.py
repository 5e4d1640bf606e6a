"""Prometheus metrics of a fernd process, served at `GET /metrics`, and the
JSON log formatter.

Every metric lives in `REGISTRY`, a registry of fernd's own, so nothing that
registers in prometheus-client's global registry ends up in fernd's output.
Counters and histograms are process-wide and change where the work happens.
The gauges of labours, sockets and faulted shared projectors are read from
the running registry, socket hub and shared database at scrape time.

Labels carry only bounded values: HTTP methods, route templates, status
codes, command names, effect types and projector names. No label ever contains a
user id, an email address, a token or a labour id.
"""

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fernd.domain.constants import MAX_PROJECTOR_ERROR_COUNT
from fernd.storage.shared_db import SHARED_PROJECTORS, SharedDatabase

if TYPE_CHECKING:
    from fernd.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

# The Prometheus text format 0.0.4, which every Prometheus version scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# The route label of a request that matched no route, so that scanners probing
# random paths add one series instead of one per path.
UNMATCHED_ROUTE = "unmatched"
# The method label of a request with a method fernd does not serve.
OTHER_METHOD = "other"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Batch sizes from one command up to the largest command_batch_limit, 10000.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10000)

REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "fernd_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "fernd_http_request_duration_seconds",
    "Time from the start of request handling to the response, in seconds.",
    ["method", "route"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "fernd_commands",
    "Commands answered, by command name and reply status code; internal"
    " commands of the process manager included.",
    ["command", "status"],
    registry=REGISTRY,
)
COMMAND_BATCH_SIZE = Histogram(
    "fernd_command_batch_size",
    "Commands committed together in one group-commit transaction.",
    buckets=BATCH_SIZE_BUCKETS,
    registry=REGISTRY,
)
CATCH_UP_RETRIES = Counter(
    "fernd_catch_up_retries",
    "Catch-up cycles that failed and were scheduled to run again.",
    registry=REGISTRY,
)
EFFECTS = Counter(
    "fernd_effects",
    "Effects that reached a final status (COMPLETED, FAILED or SKIPPED),"
    " by effect type.",
    ["effect_type", "status"],
    registry=REGISTRY,
)
EFFECT_RETRIES = Counter(
    "fernd_effect_retries",
    "Effect attempts that failed and were scheduled to run again, by effect type.",
    ["effect_type"],
    registry=REGISTRY,
)
PROJECTOR_FAULTS = Counter(
    "fernd_projector_faults",
    "Projectors that became faulted in this process, by scope (labour or"
    " shared) and projector name.",
    ["scope", "projector"],
    registry=REGISTRY,
)


def route_label(rule: str | None) -> str:
    """Return the route template for a request's matched rule, or
    UNMATCHED_ROUTE when none matched."""
    return rule if rule is not None else UNMATCHED_ROUTE


def method_label(method: str) -> str:
    """Return `method`, or OTHER_METHOD for a method outside the standard set,
    so a client cannot create series with made-up methods."""
    return method if method in _KNOWN_METHODS else OTHER_METHOD


def observe_http_request(
    method: str, rule: str | None, status: int, seconds: float | None
) -> None:
    """Count one HTTP response and record its latency. `seconds` is None when
    the start time is unknown, and then only the count changes."""
    method = method_label(method)
    route = route_label(rule)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    if seconds is not None:
        HTTP_REQUEST_DURATION.labels(method, route).observe(seconds)


# Labelled children of COMMANDS by (command, status): `labels()` takes a lock
# and builds a key on every call, and this counter is on the actor's write path.
_command_children: dict[tuple[str, int], Counter] = {}


def count_command(command: str, status: int) -> None:
    """Count one command reply with its HTTP status code."""
    child = _command_children.get((command, status))
    if child is None:
        child = COMMANDS.labels(command, str(status))
        _command_children[(command, status)] = child
    child.inc()


def observe_batch(size: int) -> None:
    """Record the number of commands of one group commit."""
    COMMAND_BATCH_SIZE.observe(size)


def count_catch_up_retry() -> None:
    CATCH_UP_RETRIES.inc()


def count_effect(effect_type: str, status: str) -> None:
    """Count an effect that reached the final `status`."""
    EFFECTS.labels(effect_type, status).inc()


def count_effect_retry(effect_type: str) -> None:
    EFFECT_RETRIES.labels(effect_type).inc()


def count_projector_fault(scope: str, projector: str) -> None:
    """Count a projector of `scope` ("labour" or "shared") that became faulted."""
    PROJECTOR_FAULTS.labels(scope, projector).inc()


def faulted_shared_projectors(shared: SharedDatabase) -> dict[str, int]:
    """Return, for each shared projector, the number of labours on which it is
    faulted: failed MAX_PROJECTOR_ERROR_COUNT times in a row or more."""
    # NOTE: this scans projection_checkpoints, two rows per labour, because
    # the table has no index on status; each scrape pays that scan.
    rows = shared.connection.execute(
        "SELECT projector_name, count(*) FROM projection_checkpoints"
        " WHERE status = 'error' AND error_count >= ? GROUP BY projector_name",
        (MAX_PROJECTOR_ERROR_COUNT,),
    ).fetchall()
    counts = dict.fromkeys(SHARED_PROJECTORS, 0)
    for name, count in rows:
        counts[str(name)] = cast(int, count)
    return counts


class LiveCollector:
    """Values read at scrape time from the running server: labours, sockets,
    activations and faulted shared projectors."""

    def __init__(self, source: "Metrics") -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.snapshot()
        yield GaugeMetricFamily(
            "fernd_labours_active",
            "Labours with a running actor.",
            value=snapshot.active_labours,
        )
        yield GaugeMetricFamily(
            "fernd_labours_hibernated",
            "Labours in the shared directory without a running actor.",
            value=snapshot.hibernated_labours,
        )
        yield GaugeMetricFamily(
            "fernd_websockets_open",
            "Open WebSockets.",
            value=snapshot.open_sockets,
        )
        yield CounterMetricFamily(
            "fernd_websockets_opened",
            "WebSockets opened since the server started.",
            value=snapshot.sockets_opened,
        )
        yield CounterMetricFamily(
            "fernd_websockets_dropped_slow",
            "WebSockets closed with 1013 because their outgoing queue was full.",
            value=snapshot.dropped_slow_sockets,
        )
        yield CounterMetricFamily(
            "fernd_labour_activations",
            "Labour actors started since the server started.",
            value=snapshot.activations,
        )
        yield CounterMetricFamily(
            "fernd_labour_hibernations",
            "Labour actors that hibernated since the server started.",
            value=snapshot.hibernations,
        )
        faulted = GaugeMetricFamily(
            "fernd_shared_projectors_faulted",
            "Labours on which a shared projector is faulted and skipped.",
            labels=["projector"],
        )
        for name, count in faulted_shared_projectors(self._source.shared).items():
            faulted.add_metric([name], count)
        yield faulted


class _Collectors:
    """Several collectors rendered as one."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render_metrics(source: "Metrics | None") -> bytes:
    """Render every fernd metric in the Prometheus text format 0.0.4; without
    a `source` only the counters and histograms of `REGISTRY` appear."""
    if source is None:
        return generate_latest(REGISTRY)
    return generate_latest(_Collectors([REGISTRY, LiveCollector(source)]))


class JsonFormatter(logging.Formatter):
    """Format a log record as one JSON object on one line.

    The keys are `time` (UTC, ISO 8601 with milliseconds and `Z`), `level`,
    `logger` and `message` (with its arguments filled in), plus `exception`
    with the traceback text when the record carries one and `stack` when it
    carries stack information. Line breaks inside values are escaped, so each
    record stays on one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, str] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            # Cached on the record like logging.Formatter does, so other
            # handlers of the same record format the traceback once.
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)
