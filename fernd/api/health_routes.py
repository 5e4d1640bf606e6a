"""Operator routes: `GET /healthz`, `GET /readyz` and `GET /metrics`.

None of them needs a token, so an operator's probes and Prometheus can reach
them without one. They reveal no user data, but `/metrics` shows traffic and
load: keep all three behind the reverse proxy or a firewall.
"""

import logging
import os
import tempfile
from pathlib import Path

import apsw
import msgspec
import trio
from quart import Response
from quart_trio import QuartTrio

from fernd.api.app import JSON, Api
from fernd.api.errors import error_body
from fernd.observability import CONTENT_TYPE, render_metrics
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

# A readiness check that takes longer than this counts as failed, so a hung
# disk returns 503 instead of leaving the probe waiting, in seconds.
READINESS_TIMEOUT_SECONDS = 5.0
# Prefix of the file the readiness check creates and deletes in the data dir.
PROBE_FILE_PREFIX = ".readyz-"

_encoder = msgspec.json.Encoder()
_HEALTHY = _encoder.encode({"status": "ok"})
_READY = _encoder.encode({"status": "ready"})


class NotReady(Exception):
    """A readiness check failed; the message names the check and the error."""


def probe_data_dir(data_dir: Path) -> None:
    """Create, write and delete a file in `data_dir`; raise OSError when the
    directory cannot take a new file."""
    descriptor, name = tempfile.mkstemp(prefix=PROBE_FILE_PREFIX, dir=data_dir)
    try:
        os.write(descriptor, b"1")
    finally:
        os.close(descriptor)
        os.unlink(name)


async def check_readiness(data_dir: Path, shared: SharedDatabase) -> None:
    """Raise NotReady unless `data_dir` takes a new file and the shared
    database completes a query that reads its schema."""
    with trio.move_on_after(READINESS_TIMEOUT_SECONDS) as scope:
        try:
            # In a worker thread, so a slow disk does not stall the event loop.
            await trio.to_thread.run_sync(
                probe_data_dir, data_dir, abandon_on_cancel=True
            )
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise NotReady(f"data directory is not writable: {reason}") from error
    if scope.cancelled_caught:
        raise NotReady(
            f"data directory write timed out after {READINESS_TIMEOUT_SECONDS:.0f} s"
        )
    try:
        # Reads the schema from the file; a bare SELECT 1 would not touch it.
        shared.connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except apsw.Error as error:
        raise NotReady(
            f"shared database query failed: {type(error).__name__}"
        ) from error


class _ReadinessLog:
    """Logs a readiness failure when it starts or changes, and the recovery,
    so a probe every few seconds does not repeat the same line."""

    def __init__(self) -> None:
        self.failure: str | None = None

    def record(self, failure: str | None, data_dir: str) -> None:
        if failure == self.failure:
            return
        if failure is None:
            logger.info("Ready again: data directory %s and shared database", data_dir)
        else:
            logger.error("Not ready (data directory %s): %s", data_dir, failure)
        self.failure = failure


def register(app: QuartTrio, api: Api) -> None:
    """Add `/healthz`, `/readyz` and `/metrics` to `app`."""
    readiness_log = _ReadinessLog()

    async def healthz() -> Response:
        return Response(_HEALTHY, status=200, content_type=JSON)

    async def readyz() -> Response:
        try:
            await check_readiness(Path(api.settings.data_dir), api.shared)
        except NotReady as error:
            readiness_log.record(str(error), api.settings.data_dir)
            body = error_body("internal_error", f"Not ready: {error}")
            return Response(body, status=503, content_type=JSON)
        readiness_log.record(None, api.settings.data_dir)
        return Response(_READY, status=200, content_type=JSON)

    async def metrics() -> Response:
        return Response(
            render_metrics(api.metrics_source), status=200, content_type=CONTENT_TYPE
        )

    # The endpoint "metrics" is taken by the admin route /api/v1/admin/metrics.
    for rule, endpoint, view in (
        ("/healthz", "healthz", healthz),
        ("/readyz", "readyz", readyz),
        ("/metrics", "prometheus_metrics", metrics),
    ):
        app.add_url_rule(rule, endpoint, view, methods=["GET"])
