"""Routes for a labour's data as a whole:

* `GET /api/v1/labour/{labour_id}/export?format=csv|json` returns the
  contractions as CSV, or the full labour record as JSON, as a download. It
  needs the same access as the read queries (ReadLabour).
* `POST /api/v1/admin/labours/{labour_id}/purge` erases a labour completely,
  for administrators only.
"""

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from quart import Response, g, request
from quart_trio import QuartTrio

from fernd.api.app import Api, _json, parse_labour_id
from fernd.api.errors import ApiError, invalid_request, not_found
from fernd.domain.authorization import Caller, authorize
from fernd.domain.enums import Capability
from fernd.domain.errors import AuthorizationDenied, LabourError, NotFound
from fernd.domain.users import User
from fernd.ops.export import (
    contractions_csv,
    contractions_in_start_order,
    encode_record,
    labour_record,
)
from fernd.runtime.actor import LabourActor
from fernd.runtime.sockets import CLOSE_LABOUR_DELETED, SocketHub

logger = logging.getLogger(__name__)

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
EXPORT_FORMATS = ("csv", "json")
# The format of an export request without `format`: the full record.
DEFAULT_EXPORT_FORMAT = "json"
# The action name passed to the authorization decision. It needs ReadLabour,
# like the read queries, and is in neither the admin nor the own-subscription
# list.
EXPORT_ACTION = "ExportLabour"
LABOUR_DELETED_REASON = "Labour deleted"

_encoder = msgspec.json.Encoder()


def register(app: QuartTrio, api: Api) -> None:
    """Add the export and purge routes to `app`."""
    routes = LabourDataRoutes(api)
    app.add_url_rule(
        "/api/v1/labour/<labour_id>/export",
        "export_labour",
        routes.export,
        methods=["GET", "OPTIONS"],
    )
    app.add_url_rule(
        "/api/v1/admin/labours/<labour_id>/purge",
        "purge_labour",
        routes.purge,
        methods=["POST", "OPTIONS"],
    )


def parse_export_format(value: str | None) -> str:
    """Return `csv` or `json`, DEFAULT_EXPORT_FORMAT when `value` is None;
    raise ApiError(400) for anything else."""
    if value is None:
        return DEFAULT_EXPORT_FORMAT
    if value not in EXPORT_FORMATS:
        raise invalid_request(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    return value


def build_export(
    actor: LabourActor, export_format: str, user: User, caller: Caller, now: datetime
) -> bytes:
    """Load, authorize and export the labour in `export_format`. Runs
    synchronously on the actor's connection, so the export is consistent.
    Raises NotFound, AuthorizationDenied or ApiError."""
    state = actor.state
    if state is None or state.deleted:
        raise NotFound()
    principal = authorize(state, caller, EXPORT_ACTION, Capability.ReadLabour)
    try:
        connection = actor.database.connection
        if export_format == "csv":
            return contractions_csv(contractions_in_start_order(connection)).encode()
        record = labour_record(connection, state, principal.sees_private_notes, now)
        if record is None:
            raise not_found("Labour not found")
        return encode_record(record)
    finally:
        # Reads store the reader's profile too; see LabourActor.remember_user.
        actor.remember_user(user, caller)


def socket_hub(api: Api) -> SocketHub | None:
    """Return the SocketHub among the registry's publishers, if any."""
    for publisher in api.registry.publishers:
        if isinstance(publisher, SocketHub):
            return publisher
    return None


def close_labour_sockets(hub: SocketHub | None, labour_id: UUID) -> int:
    """Close every open socket of the labour at once with 4404; return how
    many were open."""
    if hub is None:
        return 0
    # SocketHub has no method that closes one labour's sockets, so its map of
    # sockets is read directly.
    sockets = tuple(hub._sockets.get(labour_id, ()))
    for socket in sockets:
        socket.close_immediately(CLOSE_LABOUR_DELETED, LABOUR_DELETED_REASON)
    return len(sockets)


class LabourDataRoutes:
    """The handlers of the export and purge routes."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def export(self, labour_id: str) -> Response:
        verified = self.api.authenticate()
        now = datetime.now(UTC)
        parsed_id = parse_labour_id(labour_id)
        export_format = parse_export_format(request.args.get("format"))
        g.labour_id = parsed_id
        caller = self.api.caller_of(verified)

        def run(actor: Any) -> bytes:
            return build_export(actor, export_format, verified.user, caller, now)

        try:
            body = await self.api.registry.query(parsed_id, run)
        except (LabourError, AuthorizationDenied) as error:
            raise ApiError(error.status, error.code, error.message) from None
        if body is None:
            raise not_found("Labour not found")
        filename = f"labour-{parsed_id}.{export_format}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if export_format == "csv":
            return Response(
                body, status=200, content_type=CSV_CONTENT_TYPE, headers=headers
            )
        return _json(200, body, headers)

    async def purge(self, labour_id: str) -> Response:
        """Close the labour's sockets, stop its actor and erase it; reply with
        the PurgeReport, or 404 for an unknown labour."""
        self.api.require_admin()
        parsed_id = parse_labour_id(labour_id)
        g.labour_id = parsed_id
        hub = socket_hub(self.api)
        close_labour_sockets(hub, parsed_id)
        report = await self.api.registry.purge(parsed_id, self.api.shared)
        # A socket whose connect checks were running when the purge began
        # registers before its lease ends, so it is closed here.
        close_labour_sockets(hub, parsed_id)
        if report is None:
            raise not_found("Labour not found")
        return _json(200, _encoder.encode(report))
