"""Datetime rules of the wire format: RFC 3339 with an offset in, UTC out."""

import functools
from datetime import UTC, datetime
from typing import Annotated

import msgspec

# A request datetime must carry a UTC offset; a naive value fails to decode.
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


def to_utc(value: datetime) -> datetime:
    """Return `value` as the same instant in UTC.

    Raises ValueError when that instant lies outside years 1 to 9999, as
    `0001-01-01T00:00:00+14:00` does.
    """
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime is out of range once converted to UTC") from None


def format_datetime(value: datetime) -> str:
    """Write `value` as `YYYY-MM-DDTHH:MM:SSZ`, with six fractional digits when
    the microsecond part is not zero."""
    # isoformat, unlike strftime, writes years below 1000 with four digits.
    naive = to_utc(value).replace(tzinfo=None)
    if naive.microsecond:
        return naive.isoformat(timespec="microseconds") + "Z"
    return naive.isoformat(timespec="seconds") + "Z"


# Several projectors stamp each event of a batch, so recent timestamps repeat;
# 4096 entries cover many batches at the default batch limit of 256.
@functools.lru_cache(maxsize=4096)
def sortable_datetime(value: datetime) -> str:
    """Write `value` in UTC with exactly six fractional digits, so that text
    order equals time order."""
    utc = to_utc(value).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_datetime(text: str) -> datetime:
    """Parse an RFC 3339 datetime with an offset and return it in UTC.

    Raises msgspec.ValidationError for text without an offset and
    msgspec.DecodeError for text that is not a datetime.
    """
    value = msgspec.json.decode(msgspec.json.encode(text), type=AwareDateTime)
    try:
        return to_utc(value)
    except ValueError as error:
        raise msgspec.ValidationError(str(error)) from None
