"""The 11 queries: their JSON form and how each runs against a labour's read
models or aggregate.

A query runs synchronously on the labour actor's connection, after the labour
is loaded (unknown or deleted: Labour not found) and the caller authorized.
"""

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from fernd.api.errors import ApiError, invalid_request, not_found
from fernd.domain.authorization import Caller, Principal, authorize
from fernd.domain.commands import TaggedRequest
from fernd.domain.constants import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    SUBSCRIPTIONS_PAGE_SIZE,
)
from fernd.domain.datetimes import format_datetime, parse_datetime
from fernd.domain.enums import Capability, StatisticsRange
from fernd.domain.errors import AuthorizationDenied, NotFound
from fernd.domain.statistics import compute_statistics
from fernd.domain.users import User
from fernd.runtime.actor import LabourActor
from fernd.storage.projections import contraction as contraction_model
from fernd.storage.projections import labour as labour_model
from fernd.storage.projections import labour_update as labour_update_model
from fernd.storage.projections import subscription as subscription_model
from fernd.storage.projections import subscription_token as token_model


class Query(msgspec.Struct, kw_only=True):
    labour_id: UUID


class GetLabour(Query, kw_only=True):
    pass


# `limit` and `cursor` are decoded after the rest, so that a bad value gets its
# own message; JSON null, like an omitted field, means "not given".
_NULL = msgspec.Raw(b"null")


class GetContractions(Query, kw_only=True):
    limit: msgspec.Raw = _NULL
    cursor: msgspec.Raw = _NULL


class GetContractionById(Query, kw_only=True):
    contraction_id: UUID


class GetContractionStatistics(Query, kw_only=True):
    range: StatisticsRange | None = None


class GetLabourUpdates(Query, kw_only=True):
    limit: msgspec.Raw = _NULL
    cursor: msgspec.Raw = _NULL


class GetLabourUpdateById(Query, kw_only=True):
    labour_update_id: UUID


class GetSubscriptionToken(Query, kw_only=True):
    pass


class GetLabourSubscriptions(Query, kw_only=True):
    pass


class GetUserSubscription(Query, kw_only=True):
    pass


class GetUser(Query, kw_only=True):
    user_id: str


class GetUsers(Query, kw_only=True):
    pass


_QUERIES: dict[tuple[str, str], tuple[type[Query], Capability]] = {
    ("Labour", "GetLabour"): (GetLabour, Capability.ReadLabour),
    ("Contraction", "GetContractions"): (GetContractions, Capability.ReadLabour),
    ("Contraction", "GetContractionById"): (GetContractionById, Capability.ReadLabour),
    ("Contraction", "GetContractionStatistics"): (
        GetContractionStatistics,
        Capability.ReadLabour,
    ),
    ("LabourUpdate", "GetLabourUpdates"): (GetLabourUpdates, Capability.ReadLabour),
    ("LabourUpdate", "GetLabourUpdateById"): (
        GetLabourUpdateById,
        Capability.ReadLabour,
    ),
    ("Subscription", "GetSubscriptionToken"): (
        GetSubscriptionToken,
        Capability.ReadSubscriptions,
    ),
    ("Subscription", "GetLabourSubscriptions"): (
        GetLabourSubscriptions,
        Capability.ReadSubscriptions,
    ),
    ("Subscription", "GetUserSubscription"): (
        GetUserSubscription,
        Capability.ReadOwnSubscription,
    ),
    ("User", "GetUser"): (GetUser, Capability.ReadSubscriptions),
    ("User", "GetUsers"): (GetUsers, Capability.ReadSubscriptions),
}

_decoders = {key: msgspec.json.Decoder(cls) for key, (cls, _) in _QUERIES.items()}
_request_decoder = msgspec.json.Decoder(TaggedRequest)


class ParsedQuery(msgspec.Struct, frozen=True):
    query: Query
    capability: Capability
    name: str


def parse_tagged_query(request: TaggedRequest) -> ParsedQuery:
    """Decode a query whose group and name are read; raise ApiError(400)."""
    key = (request.type, request.payload.type)
    entry = _QUERIES.get(key)
    if entry is None:
        raise invalid_request()
    try:
        query = _decoders[key].decode(request.payload.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise invalid_request() from None
    return ParsedQuery(query, entry[1], request.payload.type)


def parse_query(body: bytes) -> ParsedQuery:
    try:
        request = _request_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise invalid_request() from None
    return parse_tagged_query(request)


# Pagination


class Page(msgspec.Struct):
    data: list[Any]
    next_cursor: str | None
    has_more: bool


class _Cursor(msgspec.Struct):
    id: str
    updated_at: str


def _limit(raw: msgspec.Raw) -> int:
    try:
        value = msgspec.json.decode(raw, type=int | None)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        value = 0
    if value is None:
        return PAGE_SIZE_DEFAULT
    if not 1 <= value <= PAGE_SIZE_MAX:
        raise invalid_request(f"limit must be between 1 and {PAGE_SIZE_MAX}")
    return value


def parse_limit_text(text: str | None) -> int:
    """Parse the `limit` query-string parameter of the list routes."""
    if text is None:
        return PAGE_SIZE_DEFAULT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= PAGE_SIZE_MAX:
        raise invalid_request(f"limit must be between 1 and {PAGE_SIZE_MAX}")
    return int(text)


def _cursor(raw: msgspec.Raw) -> tuple[datetime, UUID] | None:
    try:
        cursor = msgspec.json.decode(raw, type=_Cursor | None)
        if cursor is None:
            return None
        return parse_datetime(cursor.updated_at), UUID(cursor.id)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        raise invalid_request("Invalid cursor") from None


def encode_cursor(key: datetime, item_id: UUID) -> str:
    """Return URL-safe base64, without padding, of `<datetime>|<id>`."""
    text = f"{format_datetime(key)}|{item_id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(value: str) -> tuple[str, str]:
    """Split a `next_cursor` into its datetime and id texts; for tests and
    clients written in Python."""
    padded = value + "=" * (-len(value) % 4)
    try:
        text = base64.urlsafe_b64decode(padded).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError("Invalid cursor") from error
    key, _, item_id = text.partition("|")
    return key, item_id


def _page(
    items: list[Any], limit: int, key: Callable[[Any], tuple[datetime, UUID]]
) -> Page:
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(*key(items[-1])) if has_more else None
    return Page(items, next_cursor, has_more)


# Execution


def run_query(
    actor: LabourActor, parsed: ParsedQuery, user: User, caller: Caller, now: datetime
) -> Any:
    """Load, authorize and run `parsed` on the labour; return the result to
    encode. Raises NotFound, AuthorizationDenied or ApiError."""
    state = actor.state
    if state is None or state.deleted:
        raise NotFound()
    principal = authorize(state, caller, parsed.name, parsed.capability)
    try:
        return _answer(actor, parsed.query, principal, caller, now)
    finally:
        actor.remember_user(user, caller)


def _answer(
    actor: LabourActor,
    query: Query,
    principal: Principal,
    caller: Caller,
    now: datetime,
) -> Any:
    connection = actor.database.connection
    state = actor.state
    assert state is not None
    match query:
        case GetLabour():
            labour = labour_model.get_labour(connection)
            if labour is None:
                raise not_found("Labour not found")
            return labour
        case GetContractions():
            limit = _limit(query.limit)
            after = _cursor(query.cursor)
            items = contraction_model.list_contractions(connection, limit + 1, after)
            return _page(
                items, limit, lambda c: (c.duration.start_time, c.contraction_id)
            )
        case GetContractionById():
            found = contraction_model.get_contraction(connection, query.contraction_id)
            if found is None:
                raise not_found("Contraction not found")
            return found
        case GetContractionStatistics():
            return compute_statistics(
                state.contractions.values(),
                state.first_labour,
                query.range or StatisticsRange.SIXTY_MINUTES,
                now,
            )
        case GetLabourUpdates():
            limit = _limit(query.limit)
            after = _cursor(query.cursor)
            updates = labour_update_model.list_labour_updates(
                connection, limit + 1, after, principal.sees_private_notes
            )
            return _page(updates, limit, lambda u: (u.created_at, u.labour_update_id))
        case GetLabourUpdateById():
            update = labour_update_model.get_labour_update(
                connection, query.labour_update_id, principal.sees_private_notes
            )
            if update is None:
                raise not_found("LabourUpdate not found")
            return Page([update], None, False)
        case GetSubscriptionToken():
            token = token_model.get_token(connection)
            if token is None:
                raise not_found("No subcription token available")
            return {"token": token}
        case GetLabourSubscriptions():
            rows = subscription_model.list_subscriptions(
                connection, SUBSCRIPTIONS_PAGE_SIZE + 1
            )
            return Page(
                rows[:SUBSCRIPTIONS_PAGE_SIZE],
                None,
                len(rows) > SUBSCRIPTIONS_PAGE_SIZE,
            )
        case GetUserSubscription():
            own = subscription_model.subscription_of(connection, caller.user_id)
            if own is None:
                raise not_found("Subscription not found")
            return own
        case GetUser():
            user = actor.users.get(query.user_id)
            return [user] if user is not None else []
        case GetUsers():
            return [actor.users[user_id] for user_id in sorted(actor.users)]
    raise ApiError(500, "internal_error", "Internal server error")


__all__ = ["AuthorizationDenied", "ParsedQuery", "parse_query", "run_query"]
