"""Datetime rules of the wire format: RFC 3339 with an offset in, UTC out."""

from datetime import UTC, datetime
from typing import Annotated

import msgspec

# A request datetime must carry a UTC offset; a naive value fails to decode.
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


def to_utc(value: datetime) -> datetime:
    """Return `value` as the same instant in UTC."""
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Write `value` as `YYYY-MM-DDTHH:MM:SSZ`, with six fractional digits when
    the microsecond part is not zero."""
    value = to_utc(value)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


_last_sortable: tuple[datetime, str] | None = None


def sortable_datetime(value: datetime) -> str:
    """Write `value` in UTC with exactly six fractional digits, so that text
    order equals time order."""
    global _last_sortable
    # Every event and row of one batch carries the same `now`, so the last
    # result is usually the answer.
    last = _last_sortable
    if last is not None and last[0] is value:
        return last[1]
    utc = to_utc(value).replace(tzinfo=None)
    text = utc.isoformat(timespec="microseconds") + "Z"
    _last_sortable = (value, text)
    return text


def parse_datetime(text: str) -> datetime:
    """Parse an RFC 3339 datetime with an offset and return it in UTC.

    Raises msgspec.ValidationError for text without an offset and
    msgspec.DecodeError for text that is not a datetime.
    """
    value = msgspec.json.decode(msgspec.json.encode(text), type=AwareDateTime)
    return to_utc(value)
