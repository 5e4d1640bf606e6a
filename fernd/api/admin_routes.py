"""Administrator routes for one labour's background work:

* `GET /api/v1/admin/labours/{labour_id}/projectors` returns the checkpoints
  of the labour's own projectors and of its shared projectors, with the
  labour's last event sequence.
* `GET /api/v1/admin/labours/{labour_id}/effects?status=...` returns the
  labour's effect ledger, oldest first, without effect payloads and with
  email addresses replaced by `[redacted]`.
* `POST /api/v1/admin/labours/{labour_id}/effects/{effect_id}/retry` puts a
  FAILED or SKIPPED effect back to PENDING and wakes the labour's actor, so
  the effect runs again at once.

Every route needs an administrator token. Each reads or writes on the actor's
connection inside a lease, with no `await` between the read and the write.
"""

import logging
import re
from typing import Any
from uuid import UUID

import msgspec
from quart import Response, g, request
from quart_trio import QuartTrio

from fernd.api.app import Api, _json, parse_labour_id
from fernd.api.errors import ApiError, invalid_request, not_found
from fernd.runtime.actor import LabourActor

logger = logging.getLogger(__name__)

# The statuses an effect in the ledger can have, accepted by `status=`.
EFFECT_STATUSES = ("COMPLETED", "DISPATCHED", "FAILED", "PENDING", "SKIPPED")
# Only an effect that will not run again by itself may be retried.
RETRYABLE_STATUSES = frozenset({"FAILED", "SKIPPED"})
REDACTED = "[redacted]"
# The marker between the event part and the recipient of a notification key,
# `<labour_id>:<sequence>:notify:<recipient>:<type>:<channel>`.
_NOTIFY_MARKER = ":notify:"
# An email address anywhere in a free-text field such as `last_error`.
_EMAIL_ADDRESS = re.compile(r"[^\s@:\"']+@[^\s@:\"']+")
LABOUR_NOT_FOUND_MESSAGE = "Labour not found"
EFFECT_NOT_FOUND_MESSAGE = "Effect not found"

_encoder = msgspec.json.Encoder()


class ProjectorCheckpoint(msgspec.Struct, kw_only=True):
    """The checkpoint of one projector in the labour's own database."""

    projector_name: str
    last_processed_sequence: int
    status: str
    error_count: int
    error_message: str | None
    faulted: bool


class SharedProjectorCheckpoint(msgspec.Struct, kw_only=True):
    """The checkpoint of one shared projector for this labour."""

    name: str
    last_processed_sequence: int
    status: str
    error_count: int
    faulted: bool


class ProjectorReport(msgspec.Struct, kw_only=True):
    """The reply of the projectors route."""

    labour_id: UUID
    last_sequence: int
    projectors: list[ProjectorCheckpoint]
    shared_projectors: list[SharedProjectorCheckpoint]


class EffectSummary(msgspec.Struct, kw_only=True):
    """One ledger row as the effects route returns it. The payload is left
    out because it can contain an invited email address."""

    effect_id: str
    event_sequence: int
    effect_type: str
    idempotency_key: str
    status: str
    attempts: int
    last_attempt_at: str | None
    next_attempt_at: str | None
    last_error: str | None
    created_at: str


def register(app: QuartTrio, api: Api) -> None:
    """Add the projector, effect ledger and effect retry routes to `app`."""
    routes = AdminLabourRoutes(api)
    app.add_url_rule(
        "/api/v1/admin/labours/<labour_id>/projectors",
        "admin_labour_projectors",
        routes.projectors,
        methods=["GET", "OPTIONS"],
    )
    app.add_url_rule(
        "/api/v1/admin/labours/<labour_id>/effects",
        "admin_labour_effects",
        routes.effects,
        methods=["GET", "OPTIONS"],
    )
    app.add_url_rule(
        "/api/v1/admin/labours/<labour_id>/effects/<effect_id>/retry",
        "admin_retry_effect",
        routes.retry_effect,
        methods=["POST", "OPTIONS"],
    )


def redact_idempotency_key(key: str) -> str:
    """Return `key` with the recipient of a notification key replaced by
    `[redacted]` when it is an email address, as in a labour invite."""
    prefix, marker, rest = key.partition(_NOTIFY_MARKER)
    if not marker:
        return redact_text(key)
    recipient, _, suffix = rest.rpartition(":")
    recipient, _, notification_type = recipient.rpartition(":")
    if "@" not in recipient:
        return key
    return f"{prefix}{marker}{REDACTED}:{notification_type}:{suffix}"


def redact_text(text: str) -> str:
    """Return `text` with every email address replaced by `[redacted]`."""
    return _EMAIL_ADDRESS.sub(REDACTED, text)


def effect_summary(row: dict[str, Any]) -> EffectSummary:
    """Return the ledger row `row` without its payload and with email
    addresses redacted."""
    last_error = row["last_error"]
    return EffectSummary(
        effect_id=row["effect_id"],
        event_sequence=row["event_sequence"],
        effect_type=row["effect_type"],
        idempotency_key=redact_idempotency_key(row["idempotency_key"]),
        status=row["status"],
        attempts=row["attempts"],
        last_attempt_at=row["last_attempt_at"],
        next_attempt_at=row["next_attempt_at"],
        last_error=redact_text(last_error) if last_error is not None else None,
        created_at=row["created_at"],
    )


def projector_report(actor: LabourActor) -> ProjectorReport:
    """Return the checkpoints the actor holds for the labour's projectors."""
    projectors = [
        ProjectorCheckpoint(
            projector_name=name,
            last_processed_sequence=checkpoint.last_processed_sequence,
            status=checkpoint.status,
            error_count=checkpoint.error_count,
            error_message=checkpoint.error_message,
            faulted=checkpoint.faulted,
        )
        for name, checkpoint in sorted(actor.projections.checkpoints.items())
    ]
    shared = [
        SharedProjectorCheckpoint(
            name=name,
            last_processed_sequence=checkpoint.last_processed_sequence,
            status=checkpoint.status,
            error_count=checkpoint.error_count,
            faulted=checkpoint.faulted,
        )
        for name, checkpoint in sorted(actor.shared_checkpoints.items())
    ]
    return ProjectorReport(
        labour_id=actor.labour_id,
        last_sequence=actor.database.last_sequence(),
        projectors=projectors,
        shared_projectors=shared,
    )


def parse_effect_status(value: str | None) -> str | None:
    """Return the `status` filter, None when absent; raise ApiError(400) for
    a value that is not an effect status."""
    if value is None or value in EFFECT_STATUSES:
        return value
    raise invalid_request(f"status must be one of {', '.join(EFFECT_STATUSES)}")


def find_effect(actor: LabourActor, effect_id: str) -> dict[str, Any] | None:
    """Return the ledger row of `effect_id`, or None when there is none."""
    for row in actor.database.effect_rows():
        if row["effect_id"] == effect_id:
            return row
    return None


def retry_effect(actor: LabourActor, effect_id: str) -> EffectSummary:
    """Put a FAILED or SKIPPED effect back to PENDING and wake the actor's
    alarm so the effect runs at once; return the updated row.

    Runs synchronously on the actor's connection, so no other task changes
    the row between the status check and the update. Raises ApiError(404)
    for an unknown effect and ApiError(409) for one in another status.
    """
    row = find_effect(actor, effect_id)
    if row is None:
        raise not_found(EFFECT_NOT_FOUND_MESSAGE)
    if row["status"] not in RETRYABLE_STATUSES:
        raise ApiError(
            409,
            "conflict",
            f"Effect {effect_id} is {row['status']}; only a FAILED or SKIPPED"
            " effect can be retried",
        )
    if not actor.database.retry_failed_effect(effect_id):
        # The status check above ran on the same connection without a yield,
        # so only a storage fault can make the update change nothing.
        raise RuntimeError(f"Effect {effect_id} was not reset to PENDING")
    actor.wake_alarm()
    updated = find_effect(actor, effect_id)
    assert updated is not None
    logger.info(
        "Effect %s (%s) of labour %s reset from %s to PENDING by an administrator",
        effect_id,
        row["effect_type"],
        actor.labour_id,
        row["status"],
    )
    return effect_summary(updated)


class AdminLabourRoutes:
    """The handlers of the projector, effect ledger and retry routes."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def projectors(self, labour_id: str) -> Response:
        self.api.require_admin()
        parsed_id = parse_labour_id(labour_id)
        g.labour_id = parsed_id
        report = await self.api.registry.query(parsed_id, projector_report)
        if report is None:
            raise not_found(LABOUR_NOT_FOUND_MESSAGE)
        return _json(200, _encoder.encode(report))

    async def effects(self, labour_id: str) -> Response:
        self.api.require_admin()
        parsed_id = parse_labour_id(labour_id)
        status = parse_effect_status(request.args.get("status"))
        g.labour_id = parsed_id

        def run(actor: LabourActor) -> list[EffectSummary]:
            return [
                effect_summary(row)
                for row in actor.database.effect_rows()
                if status is None or row["status"] == status
            ]

        rows = await self.api.registry.query(parsed_id, run)
        if rows is None:
            raise not_found(LABOUR_NOT_FOUND_MESSAGE)
        return _json(200, _encoder.encode(rows))

    async def retry_effect(self, labour_id: str, effect_id: str) -> Response:
        self.api.require_admin()
        parsed_id = parse_labour_id(labour_id)
        g.labour_id = parsed_id

        def run(actor: LabourActor) -> EffectSummary:
            return retry_effect(actor, effect_id)

        summary = await self.api.registry.query(parsed_id, run)
        if summary is None:
            raise not_found(LABOUR_NOT_FOUND_MESSAGE)
        return _json(200, _encoder.encode(summary))
